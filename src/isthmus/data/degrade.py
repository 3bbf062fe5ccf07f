"""Image degradations for restoration experiments, each a seeded function of ``(N, C, H, W)`` images in [0, 1].

Families: ``blur`` (Gaussian), ``noise`` (additive Gaussian), ``scratches`` (thin bright/dark lines),
``dust`` (small blobs), ``fading`` (contrast loss towards a sepia-grey tint), ``low_light`` (gamma
darkening + shot noise), ``jpeg`` (block-DCT quantisation). :func:`degrade` applies a named list;
``old_photo`` = blur + noise + fading + scratches + dust, the synthetic stand-in for real old photos,
and ``HELD_OUT_FAMILY`` (jpeg + low-light) is never used for training in the restoration recipes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["blur", "noise", "scratches", "dust", "fading", "low_light", "jpeg", "degrade", "FAMILIES",
           "OLD_PHOTO", "HELD_OUT_FAMILY"]


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("images hold NaN or inf")
    return x


def blur(x: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (0.5, 1.5)) -> np.ndarray:
    x = _check(x)
    out = np.empty_like(x)
    for i in range(len(x)):
        s = rng.uniform(*sigma)
        out[i] = ndimage.gaussian_filter(x[i], sigma=(0, s, s))
    return out


def noise(x: np.ndarray, rng: np.random.Generator, std: tuple[float, float] = (0.02, 0.08)) -> np.ndarray:
    x = _check(x)
    s = rng.uniform(*std, size=(len(x), 1, 1, 1)).astype(np.float32)
    return np.clip(x + s * rng.standard_normal(x.shape).astype(np.float32), 0, 1)


def scratches(x: np.ndarray, rng: np.random.Generator, count: tuple[int, int] = (1, 4)) -> np.ndarray:
    x = _check(x).copy()
    n, _, h, w = x.shape
    for i in range(n):
        for _ in range(rng.integers(count[0], count[1] + 1)):
            r0, c0 = rng.integers(0, h), rng.integers(0, w)
            angle = rng.uniform(0, np.pi)
            length = rng.integers(h // 3, h)
            t = np.arange(length)
            rr = np.clip((r0 + t * np.sin(angle)).astype(int), 0, h - 1)
            cc = np.clip((c0 + t * np.cos(angle)).astype(int), 0, w - 1)
            x[i, :, rr, cc] = rng.choice([0.05, 0.95])
    return x


def dust(x: np.ndarray, rng: np.random.Generator, count: tuple[int, int] = (2, 8)) -> np.ndarray:
    x = _check(x).copy()
    n, _, h, w = x.shape
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        for _ in range(rng.integers(count[0], count[1] + 1)):
            r, c, rad = rng.integers(0, h), rng.integers(0, w), rng.uniform(0.5, 1.8)
            x[i, :, (yy - r) ** 2 + (xx - c) ** 2 <= rad ** 2] = rng.uniform(0.7, 1.0)
    return x


def fading(x: np.ndarray, rng: np.random.Generator, amount: tuple[float, float] = (0.2, 0.5)) -> np.ndarray:
    x = _check(x)
    a = rng.uniform(*amount, size=(len(x), 1, 1, 1)).astype(np.float32)
    tint = np.array([0.62, 0.55, 0.45], np.float32)[: x.shape[1]].reshape(1, -1, 1, 1)
    if x.shape[1] == 1:
        tint = np.full((1, 1, 1, 1), 0.55, np.float32)
    return (1 - a) * x + a * tint


def low_light(x: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float] = (2.0, 3.5),
              photons: float = 200.0) -> np.ndarray:
    x = _check(x)
    g = rng.uniform(*gamma, size=(len(x), 1, 1, 1)).astype(np.float32)
    dark = x ** g
    return np.clip(rng.poisson(dark * photons).astype(np.float32) / photons, 0, 1)


def jpeg(x: np.ndarray, rng: np.random.Generator, step: tuple[float, float] = (0.05, 0.15)) -> np.ndarray:
    """Blockwise 8×8 DCT with uniform coefficient quantisation (the artefact JPEG leaves)."""
    from scipy.fft import dctn, idctn

    x = _check(x)
    n, c, h, w = x.shape
    out = x.copy()
    for i in range(n):
        q = rng.uniform(*step)
        for r in range(0, h - h % 8, 8):
            for col in range(0, w - w % 8, 8):
                block = dctn(x[i, :, r:r + 8, col:col + 8], axes=(1, 2), norm="ortho")
                out[i, :, r:r + 8, col:col + 8] = idctn(np.round(block / q) * q, axes=(1, 2), norm="ortho")
    return np.clip(out, 0, 1)


FAMILIES = {"blur": blur, "noise": noise, "scratches": scratches, "dust": dust, "fading": fading,
            "low_light": low_light, "jpeg": jpeg}
OLD_PHOTO = ("blur", "fading", "noise", "scratches", "dust")
HELD_OUT_FAMILY = ("jpeg", "low_light")


def degrade(x: np.ndarray, families: Sequence[str] = OLD_PHOTO, seed: int = 0) -> np.ndarray:
    """Apply the named degradations in order, all drawn from ``seed``."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown degradation(s) {unknown}; choose from {sorted(FAMILIES)}")
    rng = np.random.default_rng(seed)
    for f in families:
        x = FAMILIES[f](x, rng)
    return np.asarray(x, dtype=np.float32)
