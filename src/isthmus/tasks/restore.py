"""Image restoration: a U-Net trained on ``(degraded, clean)`` patch pairs, applied to images of any size.

:class:`Restorer` wraps :class:`~isthmus.nn.unet.UNet` with an L1 (or MSE) loss, so the isthmus
:class:`~isthmus.train.Trainer` trains it, and saves/loads through :class:`~isthmus.io.Pretrained`.
:meth:`Restorer.restore` takes ``(N, C, H, W)`` or one ``(H, W, C)`` / ``(H, W)`` image of any size:
it pads by reflection (a margin wider than the U-Net's receptive field, plus up to the next multiple
of its pooling factor), runs the net fully convolutionally — or tile by tile with ``tile=`` to bound
memory — and crops back. Because every tile carries the same margin of real (reflected) context,
tiled and whole-image outputs agree to float precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.adversary import DomainCritic, domain_adversary_loss
from isthmus.nn.unet import UNet, UNetConfig
from isthmus.train.config import TrainerConfig

__all__ = [
    "RestorerConfig",
    "Restorer",
    "fit_restorer",
    "FitResult",
    "RestoreRunConfig",
    "RestoreRun",
    "train_restore_run",
]


@dataclass
class RestorerConfig(Config):
    unet: UNetConfig = field(default_factory=UNetConfig)
    loss: Literal["l1", "mse"] = "l1"
    # > 0: a DANN critic on the U-Net bottleneck aligns unpaired target-domain images (batch (x, y, r))
    domain_adversary: float = 0.0

    def validate(self) -> None:
        if self.loss not in ("l1", "mse"):
            raise ConfigError(f"RestorerConfig.loss must be 'l1' or 'mse', got {self.loss!r}")
        if self.domain_adversary < 0:
            raise ConfigError(f"RestorerConfig.domain_adversary must be >= 0, got {self.domain_adversary}")


class Restorer(nn.Module, Pretrained):
    """Degraded image → restored image; ``compute_loss((degraded, clean))`` for the Trainer."""

    config_class = RestorerConfig

    def __init__(self, config: RestorerConfig | None = None) -> None:
        super().__init__()
        self.config = config or RestorerConfig()
        self.net = UNet(self.config.unet)
        self.critic = DomainCritic(self.config.unet.channels[-1]) if self.config.domain_adversary > 0 else None

    @property
    def margin(self) -> int:
        """Reflection margin: the receptive-field radius of the U-Net, rounded up to its pooling multiple."""
        levels = len(self.config.unet.channels)
        radius = sum(2 * 2**i for i in range(levels)) + sum(2 * 2**i for i in range(levels - 1)) + 2**levels
        m = self.net.multiple
        return -(-radius // m) * m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute_loss(self, batch: Any) -> ModelOutput:
        want = 3 if self.critic is not None else 2
        if not isinstance(batch, (tuple, list)) or len(batch) != want:
            raise ValueError(
                "Restorer trains on (degraded, clean) pairs"
                + (
                    " plus unpaired target-domain images: pass (x, y, r)"
                    if want == 3
                    else ": pass a tuple of two image tensors"
                )
            )
        x, y = batch[0], batch[1]
        if x.shape != y.shape:
            raise ValueError(f"degraded and clean batches differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        skips, bottleneck = self.net.encode(x)
        out = self.net.decode(skips, bottleneck, x)
        loss = (out - y).abs().mean() if self.config.loss == "l1" else ((out - y) ** 2).mean()
        losses: dict[str, torch.Tensor] = {self.config.loss: loss}
        if self.critic is not None:
            _, b_r = self.net.encode(batch[2])
            losses["domain_adversary"] = self.config.domain_adversary * domain_adversary_loss(
                self.critic, bottleneck, b_r
            )
        return ModelOutput(loss=torch.stack(list(losses.values())).sum(), losses=losses, recon=out)

    # ---- inference on arbitrary sizes -------------------------------------------------------------
    def _run_padded(self, x: torch.Tensor, tile: int | None) -> torch.Tensor:
        m, mult = self.margin, self.net.multiple
        h, w = x.shape[-2:]
        ph, pw = (-h) % mult, (-w) % mult
        # reflect needs the pad smaller than the side; replicate covers tiny images
        mode = "reflect" if min(h, w) > m + max(ph, pw) else "replicate"
        xp = nn.functional.pad(x, (m, m + pw, m, m + ph), mode=mode)
        if tile is None:
            return self(xp)[..., m : m + h, m : m + w]
        if tile < mult or tile % mult:
            raise ValueError(f"tile must be a positive multiple of {mult}, got {tile}")
        out = torch.empty(x.shape[0], self.config.unet.out_channels, h + ph, w + pw, dtype=x.dtype)
        for r in range(0, h + ph, tile):
            for c in range(0, w + pw, tile):
                th, tw = min(tile, h + ph - r), min(tile, w + pw - c)
                piece = self(xp[..., r : r + th + 2 * m, c : c + tw + 2 * m])
                out[..., r : r + th, c : c + tw] = piece[..., m : m + th, m : m + tw]
        return out[..., :h, :w]

    @torch.no_grad()
    def restore(self, images: np.ndarray | torch.Tensor, tile: int | None = None, batch_size: int = 64) -> np.ndarray:
        """Restore images in [0, 1]: ``(N, C, H, W)``, or one ``(H, W, C)`` / ``(H, W)`` image (same layout back)."""
        arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        arr = arr.astype(np.float32)
        c = self.config.unet.in_channels
        single = arr.ndim in (2, 3)
        if arr.ndim == 2:
            if c != 1:
                raise ValueError(f"this restorer expects {c}-channel images, got a grey (H, W) image")
            batch = arr[None, None]
        elif arr.ndim == 3:
            if arr.shape[-1] != c:
                raise ValueError(f"one image must be (H, W, {c}) for this restorer, got shape {arr.shape}")
            batch = arr.transpose(2, 0, 1)[None]
        elif arr.ndim == 4:
            if arr.shape[1] != c:
                raise ValueError(f"images must be (N, {c}, H, W) for this restorer, got shape {arr.shape}")
            batch = arr
        else:
            raise ValueError(f"expected (N, C, H, W), (H, W, C) or (H, W) images, got shape {arr.shape}")
        if not np.isfinite(batch).all():
            raise ValueError("images hold NaN or inf")
        was = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            outs = [
                self._run_padded(torch.as_tensor(batch[i : i + batch_size], device=device), tile).cpu().numpy()
                for i in range(0, len(batch), batch_size)
            ]
        finally:
            self.train(was)
        out = np.clip(np.concatenate(outs), 0.0, 1.0)
        if not single:
            return out
        return out[0, 0] if arr.ndim == 2 else out[0].transpose(1, 2, 0)


@dataclass
class FitResult:
    model: Restorer
    train_loss: list[float]
    val_loss: list[float]  # per epoch: the restoration term (L1/MSE) on the validation pairs


def fit_restorer(
    degraded: np.ndarray,
    clean: np.ndarray,
    config: RestorerConfig | None = None,
    trainer: Any = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    unpaired: np.ndarray | None = None,
) -> FitResult:
    """Train a :class:`Restorer` on ``(N, C, h, w)`` patch pairs with the isthmus Trainer (``unpaired``:
    target-domain images for a ``domain_adversary`` restorer, one per pair, never paired in content)."""
    from isthmus.train import Trainer

    degraded, clean = np.asarray(degraded, np.float32), np.asarray(clean, np.float32)
    if degraded.shape != clean.shape or degraded.ndim != 4:
        raise ValueError(
            f"degraded and clean must be matching (N, C, h, w) arrays, got {degraded.shape} and {clean.shape}"
        )
    config = config or RestorerConfig(unet=UNetConfig(in_channels=degraded.shape[1], out_channels=clean.shape[1]))
    if config.unet.in_channels != degraded.shape[1]:
        raise ValueError(
            f"the U-Net takes {config.unet.in_channels} channels but the patches have "
            f"{degraded.shape[1]}; set unet.in_channels/out_channels"
        )
    tc = trainer if trainer is not None else TrainerConfig(epochs=10, batch_size=32, lr=1e-3, progress=False)
    torch.manual_seed(tc.seed)
    model = Restorer(config)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a))  # noqa: E731
    if (unpaired is not None) != (model.critic is not None):
        raise ValueError("pass unpaired target-domain images exactly when config.domain_adversary > 0")
    train = (t(degraded), t(clean)) + ((t(np.asarray(unpaired, np.float32)),) if unpaired is not None else ())
    if len(train[-1]) != len(degraded):
        raise ValueError(f"need one unpaired image per pair: {len(train[-1])} vs {len(degraded)}")
    vals: tuple[np.ndarray, ...] | None = val
    if val is not None and model.critic is not None:  # validation scores the restoration term only
        vals = (val[0], val[1], val[0])
    vdata = tuple(t(v) for v in vals) if vals is not None else None
    res = Trainer(model, tc).fit(train, vdata)
    hist = res.history
    return FitResult(
        model.eval(),
        [float(h.get("train_loss", float("nan"))) for h in hist],
        [float(h.get(f"val_{config.loss}", float("nan"))) for h in hist],
    )  # restoration term only


@dataclass
class RestoreRunConfig(Config):
    """What ``isthmus restore fit CONFIG`` trains: patches of the bundled train photos, degraded by
    ``degradations`` (:mod:`isthmus.data.degrade` names), judged on the held-out test photos."""

    restorer: RestorerConfig = field(default_factory=RestorerConfig)
    degradations: list[str] = field(default_factory=lambda: ["blur", "fading", "noise", "scratches", "dust"])
    n_train: int = 4000
    n_val: int = 400
    n_test: int = 400
    patch: int = 32
    gray: bool = False
    seed: int = 0
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(epochs=10, batch_size=32, lr=1e-3))

    def validate(self) -> None:
        from isthmus.data.degrade import FAMILIES

        bad = [d for d in self.degradations if d not in FAMILIES]
        if bad or not self.degradations:
            raise ConfigError(
                f"RestoreRunConfig.degradations: unknown or empty {bad or self.degradations}; "
                f"choose from {sorted(FAMILIES)}"
            )
        if min(self.n_train, self.n_val, self.n_test) < 1:
            raise ConfigError("RestoreRunConfig: n_train, n_val and n_test must be >= 1")
        mult = 2 ** (len(self.restorer.unet.channels) - 1)
        if self.patch < mult or self.patch % mult:
            raise ConfigError(
                f"RestoreRunConfig.patch={self.patch} must be a multiple of the U-Net's pooling factor {mult}"
            )
        c = 1 if self.gray else 3
        if self.restorer.unet.in_channels != c or self.restorer.unet.out_channels != c:
            raise ConfigError(
                f"RestoreRunConfig: gray={self.gray} gives {c}-channel patches; set "
                f"restorer.unet.in_channels and out_channels to {c}"
            )


@dataclass
class RestoreRun:
    model: Restorer
    config: RestoreRunConfig
    report: dict[str, Any]


def train_restore_run(cfg: RestoreRunConfig, progress: bool = False) -> RestoreRun:
    """Train on degraded train-photo patches; report PSNR/SSIM on test-photo patches (input vs restored)."""
    from isthmus.data.degrade import degrade
    from isthmus.data.photos import photo_patches
    from isthmus.metrics.image import psnr, ssim

    tc = cfg.trainer.with_overrides({"seed": cfg.seed, "progress": progress})
    s = cfg.seed
    clean = photo_patches("train", cfg.n_train + cfg.n_val, cfg.patch, seed=s, gray=cfg.gray)
    deg = degrade(clean, cfg.degradations, seed=s + 1)
    n = cfg.n_train
    fit = fit_restorer(deg[:n], clean[:n], cfg.restorer, tc, val=(deg[n:], clean[n:]))
    test = photo_patches("test", cfg.n_test, cfg.patch, seed=s + 2, gray=cfg.gray)
    test_deg = degrade(test, cfg.degradations, seed=s + 3)
    restored = fit.model.restore(test_deg)
    report = {
        "degradations": list(cfg.degradations),
        "train_loss": fit.train_loss,
        "val_loss": fit.val_loss,
        "test_psnr_input": float(psnr(test, test_deg).mean()),
        "test_psnr_restored": float(psnr(test, restored).mean()),
        "test_ssim_input": float(ssim(test, test_deg).mean()),
        "test_ssim_restored": float(ssim(test, restored).mean()),
        "test_patches": cfg.n_test,
        "test_photos": "held-out photos (isthmus.data.photos.TEST_PHOTOS)",
    }
    return RestoreRun(fit.model, cfg, report)
