"""Reconstruction losses and input corruption (denoising autoencoders)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

RECON_LOSSES = ("mse", "bce", "l1")
CORRUPTIONS = ("none", "gaussian", "mask", "salt_pepper")


def reconstruction_loss(
    recon: torch.Tensor, target: torch.Tensor, kind: str = "mse", reduction: str = "sum"
) -> torch.Tensor:
    """Per-sample loss summed over features (``reduction="sum"``) or averaged (``"mean"``), then batch-mean.

    ``sum`` keeps the reconstruction on the same scale as a KL summed over latent dimensions,
    which is what the ELBO needs; ``mean`` gives per-element numbers that are easier to read.
    ``bce`` expects ``recon`` to be probabilities (use a sigmoid output) and targets in [0, 1].
    """
    if recon.shape != target.shape:
        target = target.reshape(recon.shape)
    if kind == "mse":
        per = (recon - target).pow(2)
    elif kind == "l1":
        per = (recon - target).abs()
    elif kind == "bce":
        per = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {list(RECON_LOSSES)}")
    per = per.flatten(1)
    per_sample = per.sum(1) if reduction == "sum" else per.mean(1)
    return per_sample.mean()


def corrupt(x: torch.Tensor, kind: str, level: float) -> torch.Tensor:
    """Corrupt a batch for denoising training (Vincent et al. 2008).

    ``gaussian``: add N(0, level²); ``mask``: zero a ``level`` fraction of entries;
    ``salt_pepper``: set a ``level`` fraction of entries to the batch min or max.
    """
    if kind == "none" or level <= 0:
        return x
    if kind == "gaussian":
        return x + level * torch.randn_like(x)
    if kind == "mask":
        keep = (torch.rand_like(x) >= level).to(x.dtype)
        return x * keep
    if kind == "salt_pepper":
        r = torch.rand_like(x)
        out = x.clone()
        out[r < level / 2] = x.min()
        out[(r >= level / 2) & (r < level)] = x.max()
        return out
    raise ValueError(f"unknown corruption {kind!r}; choose one of {list(CORRUPTIONS)}")
