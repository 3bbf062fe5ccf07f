"""Differentiable SSIM (Wang et al. 2004) for training losses, e.g. NeRV's ``0.7·L1 + 0.3·(1 − SSIM)``.

Gaussian window (σ = 1.5, 11 taps), population covariances, constants ``K1 = 0.01, K2 = 0.03`` and a
'valid' window: the same numbers as scikit-image's ``structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)`` (tested), which :mod:`isthmus.metrics.image` uses to *score*.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ssim"]


def _window(sigma: float, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Per-image mean SSIM of ``(B, C, H, W)`` tensors → ``(B,)``; differentiable in both inputs."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    radius = int(3.5 * sigma + 0.5)  # scipy's gaussian_filter with truncate=3.5, as scikit-image uses
    if min(x.shape[-2:]) < 2 * radius + 1:
        raise ValueError(
            f"images must be at least {2 * radius + 1} px on each side for SSIM, got {tuple(x.shape[-2:])}"
        )
    c = x.shape[1]
    g = _window(sigma, radius).to(x)
    kh, kw = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, kh, groups=c), kw, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
