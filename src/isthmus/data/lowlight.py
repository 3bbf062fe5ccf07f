"""Synthetic low-light pairs that make the Retinex model I = R ⊙ L + N exact (referee card, § Seed 16).

For a normal-light image ``gt`` in [0, 1]: ``low = PoissonGauss(k · S ⊙ gt ** γ)`` with a global
exposure ``k``, a smooth illumination field ``S`` in [0.6, 1], a tone curve ``γ``, shot noise at
``gain`` photons per unit and Gaussian read noise. The true illumination ``k · S`` comes with the
pair, so decomposition quality can be scored. Without noise, ``(low / (k·S)) ** (1/γ)`` returns
``gt`` exactly (the test pins this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["LowLightPairs", "smooth_field", "synthesize_low_light"]


@dataclass
class LowLightPairs:
    low: np.ndarray  # (N, C, H, W) in [0, 1]
    gt: np.ndarray  # (N, C, H, W) in [0, 1]
    illumination: np.ndarray  # (N, 1, H, W): k · S
    gamma: np.ndarray  # (N,)


def smooth_field(
    n: int, h: int, w: int, rng: np.random.Generator, lo: float = 0.6, hi: float = 1.0, sigma: float = 0.3
) -> np.ndarray:
    """``(n, 1, h, w)`` low-frequency random fields rescaled to span [lo, hi] (``sigma`` × the side)."""
    out = np.empty((n, 1, h, w), np.float32)
    for i in range(n):
        f = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma * max(h, w), mode="wrap")
        f = (f - f.min()) / (np.ptp(f) + 1e-12)
        out[i, 0] = lo + (hi - lo) * f
    return out


def synthesize_low_light(
    gt: np.ndarray,
    seed: int = 0,
    k: tuple[float, float] = (0.05, 0.2),
    gamma: tuple[float, float] = (1.0, 1.4),
    read_noise: tuple[float, float] = (0.005, 0.02),
    gain: tuple[float, float] = (200.0, 1000.0),
    noise: bool = True,
) -> LowLightPairs:
    gt = np.asarray(gt, np.float32)
    if gt.ndim != 4 or not np.isfinite(gt).all() or gt.min() < 0 or gt.max() > 1:
        raise ValueError(f"gt must be finite (N, C, H, W) images in [0, 1], got shape {gt.shape}")
    rng = np.random.default_rng(seed)
    n, _, h, w = gt.shape
    kk = np.asarray(rng.uniform(*k, size=(n, 1, 1, 1)), dtype=np.float32)
    illum = kk * smooth_field(n, h, w, rng)
    g = np.asarray(rng.uniform(*gamma, size=n), dtype=np.float32)
    clean = illum * gt ** g[:, None, None, None]
    if noise:
        gn = rng.uniform(*gain, size=(n, 1, 1, 1))
        rd = rng.uniform(*read_noise, size=(n, 1, 1, 1))
        low = rng.poisson(clean * gn) / gn + rd * rng.standard_normal(clean.shape)
        low = np.clip(low, 0, 1).astype(np.float32)
    else:
        low = clean.astype(np.float32)
    return LowLightPairs(low=low, gt=gt, illumination=illum.astype(np.float32), gamma=g)
