"""Train an :class:`~isthmus.models.inr_vae.INRVAE` (DDMI's D2C-VAE or a baseline) and a latent prior on it.

Stage 1 follows DDMI's ``tools/d2c_vae/image.py`` (errata seed 15 §1–2): per-image **summed** L1 (over
random coordinates, rescaled to the full pixel count) plus ``kl_coeff ×`` the **summed** KL, with the KL
weight warmed up linearly from ``kl_min`` to ``kl_max`` over the first 90 % of steps; INR decoders see
``coords`` random pixel centres per image, the conv decoder every pixel. Held-out PSNR is logged along
the way (the plateau check). Stage 2 fits a :class:`~isthmus.models.diffusion.FlowMatchingPrior` on
standardised flattened posterior samples, identical for every decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from isthmus.metrics.image import psnr
from isthmus.models.diffusion import FlowMatchingPrior
from isthmus.models.inr_vae import INRVAE
from isthmus.nn.inr import coordinate_grid

__all__ = ["kl_schedule", "Stage1", "fit_inr_vae", "reconstruct", "LatentPrior", "fit_latent_prior"]


def kl_schedule(step: int, total: int, kl_min: float = 1e-4, kl_max: float = 0.5, warm: float = 0.9) -> float:
    """DDMI's ``linear_kl_coeff``: ``kl_min`` → ``kl_max`` linearly over the first ``warm`` of training."""
    return kl_min + (kl_max - kl_min) * min(1.0, step / max(1.0, warm * total))


@dataclass
class Stage1:
    val_psnr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


@torch.no_grad()
def reconstruct(model: INRVAE, x: torch.Tensor, side: int | None = None, batch: int = 500) -> torch.Tensor:
    """Decode the posterior means of ``x`` as full images (at ``side`` for the INR decoders)."""
    model.eval()
    out = torch.cat(
        [model.decode_image(model.encode_stats(x[i : i + batch])[0], side) for i in range(0, len(x), batch)]
    )
    model.train()
    return out


def fit_inr_vae(
    model: INRVAE,
    x: np.ndarray | torch.Tensor,
    val: np.ndarray | torch.Tensor,
    steps: int,
    batch_size: int = 32,
    coords: int = 256,
    lr: float = 1e-3,
    kl_max: float = 0.5,
    seed: int = 0,
    log_points: int = 20,
) -> Stage1:
    x, val = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(val, dtype=torch.float32)
    side = model.config.side
    grid = coordinate_grid(side, side)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
    every = max(1, steps // log_points)
    out = Stage1()
    model.train()
    for k in range(steps):
        xb = x[torch.randint(len(x), (batch_size,), generator=g)]
        mu, logvar = model.encode_stats(xb)
        z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
        if model.config.decoder == "conv":
            rec = (model.decode_image(z) - xb).abs().flatten(1).sum(1)
        else:
            idx = torch.randint(side * side, (batch_size, coords), generator=g)
            target = xb.flatten(1).gather(1, idx)
            rec = (model.decode(z, grid[idx]) - target).abs().sum(1) * (side * side / coords)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        loss = (rec + kl_schedule(k, steps, kl_max=kl_max) * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out.loss.append(float(loss.detach()))
        if (k + 1) % every == 0 or k == steps - 1:
            out.val_psnr.append(float(psnr(val.numpy(), reconstruct(model, val).numpy()).mean()))
    model.eval()
    return out


@dataclass
class LatentPrior:
    prior: FlowMatchingPrior
    mean: torch.Tensor
    std: torch.Tensor
    shape: tuple[int, ...]
    loss: list[float]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        u = self.prior.sample(n, generator=torch.Generator().manual_seed(seed))
        return (u * self.std + self.mean).reshape(n, *self.shape)


def fit_latent_prior(
    model: INRVAE,
    x: np.ndarray | torch.Tensor,
    steps: int,
    batch_size: int = 128,
    width: int = 256,
    depth: int = 3,
    lr: float = 1e-3,
    seed: int = 0,
) -> LatentPrior:
    """Flow matching on standardised posterior *samples* of ``x`` (DDMI trains its LDM on samples)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mu, logvar = torch.cat(
            [torch.cat(model.encode_stats(x[i : i + 1000]), 1) for i in range(0, len(x), 1000)]
        ).chunk(2, 1)
        z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
    shape = tuple(z.shape[1:])
    flat = z.flatten(1)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    u = (flat - mean) / std
    torch.manual_seed(seed)
    prior = FlowMatchingPrior(dim=u.shape[1], width=width, depth=depth)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve = []
    for _ in range(steps):
        loss = prior.compute_loss(u[torch.randint(len(u), (batch_size,), generator=g)]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        curve.append(float(loss.detach()))
    prior.eval()
    return LatentPrior(prior, mean, std, shape, curve)
