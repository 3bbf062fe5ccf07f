"""Train a small VAE, then train mask-aware skips (EMASC) or fine-tune its decoder, with the VAE frozen.

Following LaDI-VTON's ``train_emasc.py`` (errata seed 40 §3, §5): the decoder decodes a posterior
*sample* of the target image's own latent, the skips come from the encoder run on the *masked* target
(masked pixels set to mid-grey, i.e. 0 in [−1, 1]), and the loss is ``L1 + 0.5·perceptual`` over the
whole image. The perceptual term uses the frozen VAE encoder's own features at /2, /4 and /8 (weights
1/4, 1/2, 1, as the VGG loss weights deeper layers more): VGG weights cannot be fetched offline.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from isthmus.models.skip_vae import SkipVAE
from isthmus.nn.emasc import MaskAwareSkip

__all__ = [
    "fit_skip_vae",
    "mask_image",
    "perceptual_loss",
    "lr_factor",
    "validation_loss",
    "SkipTraining",
    "train_skips",
    "decode_with_skips",
    "weights_hash",
    "DECODER_PARTS",
    "frozen_copy",
]

DECODER_PARTS = ("dec_in", "dec_mid", "up", "upconv", "dec_norm", "conv_out")


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def mask_image(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked pixels set to mid-grey (0.5 in [0, 1] = 0 in [−1, 1], LaDI-VTON's ``im_mask``)."""
    return x * (1 - mask) + 0.5 * mask


def fit_skip_vae(
    vae: SkipVAE,
    images: np.ndarray,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    kl_weight: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """Train the VAE on ``images`` ``(N, 3, H, W)``: mean L1 + ``kl_weight`` · mean KL; returns the loss curve."""
    x = torch.as_tensor(images, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    vae.train()
    curve = []
    for _ in range(steps):
        xb = x[torch.randint(len(x), (batch_size,), generator=g)]
        out, mu, logvar = vae(xb)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = (out - xb).abs().mean() + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        curve.append(float(loss.detach()))
    return curve


def perceptual_loss(vae: SkipVAE, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    _, _, fo = vae.encode_features(out)
    with torch.no_grad():
        _, _, ft = vae.encode_features(target)
    return sum(w * (a - b).abs().mean() for w, a, b in zip((0.25, 0.5, 1.0), fo[2:], ft[2:]))  # type: ignore[return-value]


def lr_factor(step: int, steps: int, warmup: int, schedule: str = "constant") -> float:
    """Multiplier of the base lr at ``step`` (0-based): linear warm-up over ``warmup`` steps, then constant
    or a half-cosine from 1 to 0 at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


@dataclass
class SkipTraining:
    loss_curve: list[float] = field(default_factory=list)
    val_curve: list[float] = field(default_factory=list)  # loss on the fixed validation set, every eval_every steps


def _skips(vae: SkipVAE, skip: MaskAwareSkip | None, source: torch.Tensor, mask: torch.Tensor, mask_input: bool = True):
    """Skip features from the encoder run on the masked ``source`` (``mask_input=False``: on the unmasked
    source, which holds the old content of the edited region — the leakage control)."""
    if skip is None:
        return None
    with torch.no_grad():
        _, _, taps = vae.encode_features(mask_image(source, mask) if mask_input else source)
    return skip(taps, mask)


@torch.no_grad()
def validation_loss(
    vae: SkipVAE,
    skip: MaskAwareSkip | None,
    images: torch.Tensor,
    masks: torch.Tensor,
    perceptual: float = 0.5,
    mask_input: bool = True,
) -> float:
    """The training loss on a fixed set, deterministically: the latent *mean* is decoded (no sample), so
    the curve moves only with the weights (a plateau test on batch losses mostly measures batch noise)."""
    was = skip.training if skip is not None else False
    if skip is not None:
        skip.eval()
    mu, _, _ = vae.encode_features(images)
    rec = vae.decode(mu, _skips(vae, skip, images, masks, mask_input))
    loss = F.l1_loss(rec, images) + (perceptual * perceptual_loss(vae, rec, images) if perceptual else 0.0)
    if skip is not None:
        skip.train(was)
    return float(loss)


def train_skips(
    vae: SkipVAE,
    skip: MaskAwareSkip | None,
    images: np.ndarray,
    masks: np.ndarray,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    warmup: int = 50,
    schedule: str = "constant",
    finetune_decoder: bool = False,
    perceptual: float = 0.5,
    seed: int = 0,
    mask_input: bool = True,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    eval_every: int = 20,
) -> SkipTraining:
    """Train ``skip`` (or, with ``finetune_decoder``, the decoder of a *copy* the caller passes) with the
    encoder frozen: AdamW with weight decay on every parameter, constant lr after a linear warm-up,
    grad-norm clip 1.0 (``train_emasc.py``); ``schedule="cosine"`` decays the lr to 0 after the warm-up
    instead (a short run at a high lr otherwise ends mid-noise). ``val = (images, masks)``: the loss on that fixed set is
    logged before training and every ``eval_every`` steps (``SkipTraining.val_curve``)."""
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    x = torch.as_tensor(images, dtype=torch.float32)
    m = torch.as_tensor(masks, dtype=torch.float32)
    vx, vm = (torch.as_tensor(a, dtype=torch.float32) for a in val) if val is not None else (None, None)
    params: list[torch.nn.Parameter] = []
    if skip is not None:
        params += list(skip.parameters())
    for p in vae.parameters():
        p.requires_grad_(False)
    if finetune_decoder:
        for name in DECODER_PARTS:
            for p in getattr(vae, name).parameters():
                p.requires_grad_(True)
                params.append(p)
    if not params:
        raise ValueError("nothing to train: pass a skip module or finetune_decoder=True")
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, steps, warmup, schedule))
    g = torch.Generator().manual_seed(seed)
    vae.eval()
    out = SkipTraining()

    def log_val() -> None:
        if vx is not None and vm is not None:
            out.val_curve.append(validation_loss(vae, skip, vx, vm, perceptual, mask_input))

    log_val()
    for step in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        xb, mb = x[idx], m[torch.randint(len(m), (batch_size,), generator=g)]
        with torch.no_grad():
            mu, logvar, _ = vae.encode_features(xb)
            z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
        rec = vae.decode(z, _skips(vae, skip, xb, mb, mask_input))
        loss = F.l1_loss(rec, xb) + (perceptual * perceptual_loss(vae, rec, xb) if perceptual else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        out.loss_curve.append(float(loss.detach()))
        if (step + 1) % eval_every == 0:
            log_val()
    for p in vae.parameters():
        p.requires_grad_(False)
    return out


@torch.no_grad()
def decode_with_skips(
    vae: SkipVAE,
    skip: MaskAwareSkip | None,
    edited: np.ndarray,
    source: np.ndarray,
    masks: np.ndarray,
    batch_size: int = 64,
    mask_input: bool = True,
) -> np.ndarray:
    """Decode the edited images' latent means with skips from the masked *source* (the unedited image;
    ``mask_input=False``: from the unmasked source, old content included — the leakage control)."""
    vae.eval()
    outs = []
    for i in range(0, len(edited), batch_size):
        e = torch.as_tensor(edited[i : i + batch_size])
        s = torch.as_tensor(source[i : i + batch_size])
        mk = torch.as_tensor(masks[i : i + batch_size])
        mu, _, _ = vae.encode_features(e)
        outs.append(vae.decode(mu, _skips(vae, skip, s, mk, mask_input)).numpy())
    return np.concatenate(outs)


def frozen_copy(vae: SkipVAE) -> SkipVAE:
    return copy.deepcopy(vae)
