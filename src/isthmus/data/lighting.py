"""Relit images with known lighting parameters ("Lit-MNIST", referee card § Seed 21).

An image is ``clip(albedo · L, 0, 1) ** gamma`` with the illumination field

    L(u, v) = a · (1 + s · r_θ(u, v)) · (1 − d · exp(−|(u, v) − c|² / (2 σ²)))

on pixel centres ``u, v ∈ (−1, 1)``: ambient level ``a``, a directional ramp ``r_θ`` of angle ``θ``
spanning exactly [−1, 1] over the image (so ``s`` is the ramp's strength), and a soft round shadow of
depth ``d`` centred at ``c``. With ``a = 1, s = 0, d = 0, gamma = 1`` the albedo comes back unchanged
(the tests pin this). The parameters of every image are returned, so a recipe can train a lighting
regressor, re-light the same albedo under another range (an oracle augmentation), or build a test set
whose lighting lies outside the training range.

:func:`lit_digits` composes the albedo from digits on grey textured backgrounds (photo patches).
:func:`photometric_jitter` is the pixel-space baseline: global brightness, contrast and gamma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

__all__ = [
    "LightingRanges",
    "Lighting",
    "sample_lighting",
    "relight",
    "digit_albedo",
    "lit_digits",
    "photometric_jitter",
    "lighting_regressor",
    "NARROW",
    "FULL",
    "SHIFTED",
]

Range = tuple[float, float]


@dataclass(frozen=True)
class LightingRanges:
    """Uniform ranges of each lighting parameter (the angle θ is always uniform on [0, 2π))."""

    ambient: Range = (1.0, 1.0)
    strength: Range = (0.0, 0.0)
    shadow: Range = (0.0, 0.0)
    gamma: Range = (1.0, 1.0)
    shadow_sigma: float = 0.35

    def __post_init__(self) -> None:
        for name in ("ambient", "strength", "shadow", "gamma"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"LightingRanges.{name} must be a finite (lo, hi) with lo <= hi, got {(lo, hi)}")
        if self.ambient[0] <= 0 or self.gamma[0] <= 0:
            raise ValueError(f"ambient and gamma must be > 0, got ambient {self.ambient}, gamma {self.gamma}")
        if self.strength[0] < 0 or self.strength[1] > 1:
            raise ValueError(f"strength must lie in [0, 1] (the field stays >= 0), got {self.strength}")
        if self.shadow[0] < 0 or self.shadow[1] > 1:
            raise ValueError(f"shadow depth must lie in [0, 1], got {self.shadow}")
        if self.shadow_sigma <= 0:
            raise ValueError(f"shadow_sigma must be > 0, got {self.shadow_sigma}")


# The card's pre-registered ranges: a narrow labelled set, a broad unlabelled pool, a shifted test.
NARROW = LightingRanges(ambient=(0.8, 1.0), strength=(0.0, 0.2), shadow=(0.0, 0.1), gamma=(0.9, 1.1))
FULL = LightingRanges(ambient=(0.3, 1.0), strength=(0.0, 0.9), shadow=(0.0, 0.6), gamma=(0.8, 1.5))
SHIFTED = LightingRanges(ambient=(0.3, 0.6), strength=(0.5, 0.9), shadow=(0.3, 0.6), gamma=(1.1, 1.5))


@dataclass
class Lighting:
    """Per-image lighting parameters, each ``(N,)`` (``center`` is ``(N, 2)`` in (u, v))."""

    ambient: np.ndarray
    angle: np.ndarray
    strength: np.ndarray
    shadow: np.ndarray
    center: np.ndarray
    gamma: np.ndarray
    shadow_sigma: float = 0.35

    def __len__(self) -> int:
        return len(self.ambient)

    def targets(self) -> np.ndarray:
        """``(N, 3)``: ambient, s·cos θ, s·sin θ — continuous targets for a lighting regressor."""
        return np.stack(
            [self.ambient, self.strength * np.cos(self.angle), self.strength * np.sin(self.angle)], 1
        ).astype(np.float32)


def sample_lighting(n: int, ranges: LightingRanges, rng: np.random.Generator) -> Lighting:
    u = lambda r: rng.uniform(r[0], r[1], n)  # noqa: E731
    return Lighting(
        ambient=u(ranges.ambient),
        angle=rng.uniform(0.0, 2 * math.pi, n),
        strength=u(ranges.strength),
        shadow=u(ranges.shadow),
        center=rng.uniform(-1.0, 1.0, (n, 2)),
        gamma=u(ranges.gamma),
        shadow_sigma=ranges.shadow_sigma,
    )


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.meshgrid((np.arange(h) + 0.5) / h * 2 - 1, (np.arange(w) + 0.5) / w * 2 - 1, indexing="ij")
    return u, v  # u runs along the width (x), v along the height (y)


def illumination_field(lighting: Lighting, h: int, w: int) -> np.ndarray:
    """``(N, 1, h, w)`` field ``L`` of the module doc (before clipping and gamma)."""
    u, v = _grid(h, w)
    c, s = np.cos(lighting.angle)[:, None, None], np.sin(lighting.angle)[:, None, None]
    ramp = (u * c + v * s) / (np.abs(u).max() * (np.abs(c) + np.abs(s)))  # exactly [-1, 1] at the corners
    d2 = (u - lighting.center[:, 0, None, None]) ** 2 + (v - lighting.center[:, 1, None, None]) ** 2
    shadow = 1 - lighting.shadow[:, None, None] * np.exp(-d2 / (2 * lighting.shadow_sigma**2))
    field = lighting.ambient[:, None, None] * (1 + lighting.strength[:, None, None] * ramp) * shadow
    return field[:, None].astype(np.float32)


def relight(albedo: np.ndarray, lighting: Lighting) -> np.ndarray:
    """``albedo`` ``(N, C, H, W)`` in [0, 1] under ``lighting`` → ``(N, C, H, W)`` float32 in [0, 1]."""
    a = np.asarray(albedo, dtype=np.float32)
    if a.ndim != 4 or not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"albedo must be finite (N, C, H, W) images in [0, 1], got shape {a.shape}")
    if len(lighting) != len(a):
        raise ValueError(f"{len(lighting)} lighting parameter sets for {len(a)} images")
    lit = np.clip(a * illumination_field(lighting, a.shape[2], a.shape[3]), 0.0, 1.0)
    return (lit ** lighting.gamma[:, None, None, None].astype(np.float32)).astype(np.float32)


def digit_albedo(digits: np.ndarray, backgrounds: np.ndarray, size: int = 32, ink: float = 0.95) -> np.ndarray:
    """Digits ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1], centred on ``size``² ``backgrounds``
    ``(N, 1, size, size)`` in [0, 1]: ``bg + (ink − bg) · digit`` (the digit's grey level is its opacity)."""
    d = np.asarray(digits, dtype=np.float32)
    d = d[:, 0] if d.ndim == 4 else d
    if d.ndim != 3 or d.shape[1] > size or d.shape[2] > size:
        raise ValueError(f"digits must be (N, h, w) with h, w <= {size}, got {np.shape(digits)}")
    bg = np.asarray(backgrounds, dtype=np.float32)
    if bg.shape != (len(d), 1, size, size):
        raise ValueError(f"backgrounds must be {(len(d), 1, size, size)}, got {bg.shape}")
    top, left = (size - d.shape[1]) // 2, (size - d.shape[2]) // 2
    pad = np.zeros((len(d), 1, size, size), np.float32)
    pad[:, 0, top : top + d.shape[1], left : left + d.shape[2]] = d
    return np.clip(bg + (ink - bg) * pad, 0.0, 1.0).astype(np.float32)


def lit_digits(
    digits: np.ndarray, ranges: LightingRanges, seed: int, split: str = "train", bg_range: Range = (0.1, 0.45)
) -> tuple[np.ndarray, np.ndarray, Lighting]:
    """``(images, albedo, lighting)``: digits on grey photo patches of ``split`` (contrast squeezed into
    ``bg_range``), relit with parameters drawn from ``ranges``; everything random comes from ``seed``."""
    from isthmus.data.photos import photo_patches

    n = len(digits)
    patches = photo_patches(split, n, size=32, seed=seed, gray=True)
    bg = bg_range[0] + (bg_range[1] - bg_range[0]) * patches
    albedo = digit_albedo(digits, bg)
    lighting = sample_lighting(n, ranges, np.random.default_rng(seed + 1))
    return relight(albedo, lighting), albedo, lighting


def photometric_jitter(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: Range = (0.3, 1.0),
    shift: Range = (-0.1, 0.1),
    gamma: Range = (0.8, 1.5),
) -> torch.Tensor:
    """Global pixel-space jitter of ``(B, C, H, W)`` in [0, 1]: ``clip(x · scale + shift, 0, 1) ** gamma``, one
    draw of each per image. The defaults span the global part of :data:`FULL` (ambient 0.3-1, gamma 0.8-1.5)."""
    if x.ndim != 4:
        raise ValueError(f"photometric_jitter expects (B, C, H, W), got shape {tuple(x.shape)}")
    b = x.shape[0]

    def draw(r: Range) -> torch.Tensor:
        return (r[0] + (r[1] - r[0]) * torch.rand(b, generator=generator)).view(b, 1, 1, 1).to(x.dtype)

    k, t, g = draw(scale), draw(shift), draw(gamma)
    return (x * k + t).clamp(0.0, 1.0) ** g


def lighting_regressor(pool_x: np.ndarray, targets: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Ridge regression from pixels to lighting ``targets`` (e.g. :meth:`Lighting.targets`), fitted on images
    whose lighting is known; returns ``images -> (N, outputs)``. Reads the lighting of edited images (NaTra's
    direction check, seed 21)."""
    from sklearn.linear_model import Ridge

    reg = Ridge(alpha=1.0).fit(pool_x.reshape(len(pool_x), -1), targets)
    return lambda x: reg.predict(np.asarray(x).reshape(len(x), -1))
