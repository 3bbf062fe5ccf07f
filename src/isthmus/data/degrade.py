"""Image degradations for restoration experiments, each a seeded function of ``(N, C, H, W)`` images in [0, 1].

Families: ``blur`` (Gaussian), ``noise`` (additive Gaussian), ``scratches`` (thin bright/dark lines),
``dust`` (small blobs), ``fading`` (contrast loss towards a sepia-grey tint), ``low_light`` (gamma
darkening + shot noise), ``jpeg`` (block-DCT quantisation). :func:`degrade` applies a named list;
``old_photo`` = blur + noise + fading + scratches + dust, the synthetic stand-in for real old photos;
``OLD_PHOTO_B`` (defocus, uneven fading, vignetting, correlated film grain, curved scratches and spots)
is a second, disjoint process standing in for *real* old photos in seed 2; and ``HELD_OUT_FAMILY`` (jpeg + low-light) is never used for training in the restoration recipes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "blur",
    "noise",
    "scratches",
    "dust",
    "fading",
    "low_light",
    "jpeg",
    "degrade",
    "FAMILIES",
    "OLD_PHOTO",
    "OLD_PHOTO_B",
    "HELD_OUT_FAMILY",
    "defocus",
    "film_grain",
    "curved_scratches",
    "vignette",
    "uneven_fading",
]


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
            x[i, :, (yy - r) ** 2 + (xx - c) ** 2 <= rad**2] = rng.uniform(0.7, 1.0)
    return x


def fading(x: np.ndarray, rng: np.random.Generator, amount: tuple[float, float] = (0.2, 0.5)) -> np.ndarray:
    x = _check(x)
    a = rng.uniform(*amount, size=(len(x), 1, 1, 1)).astype(np.float32)
    tint = np.array([0.62, 0.55, 0.45], np.float32)[: x.shape[1]].reshape(1, -1, 1, 1)
    if x.shape[1] == 1:
        tint = np.full((1, 1, 1, 1), 0.55, np.float32)
    return (1 - a) * x + a * tint


def low_light(
    x: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float] = (2.0, 3.5), photons: float = 200.0
) -> np.ndarray:
    x = _check(x)
    g = rng.uniform(*gamma, size=(len(x), 1, 1, 1)).astype(np.float32)
    dark = x**g
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
                block = dctn(x[i, :, r : r + 8, col : col + 8], axes=(1, 2), norm="ortho")
                out[i, :, r : r + 8, col : col + 8] = idctn(np.round(block / q) * q, axes=(1, 2), norm="ortho")
    return np.clip(out, 0, 1)


# ---- family B: a second, disjoint "old photo" process (seed 2's stand-in for real old photos) --------------
def defocus(x: np.ndarray, rng: np.random.Generator, radius: tuple[float, float] = (1.0, 2.0)) -> np.ndarray:
    """Disk (lens defocus) blur, unlike the Gaussian ``blur``."""
    x = _check(x)
    out = np.empty_like(x)
    for i in range(len(x)):
        r = rng.uniform(*radius)
        k = int(np.ceil(r))
        yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
        disk = (yy**2 + xx**2 <= r**2).astype(np.float32)
        out[i] = ndimage.convolve(x[i], (disk / disk.sum())[None], mode="reflect")
    return out


def film_grain(
    x: np.ndarray,
    rng: np.random.Generator,
    std: tuple[float, float] = (0.03, 0.07),
    corr: tuple[float, float] = (0.7, 1.2),
) -> np.ndarray:
    """Spatially correlated, brightness-dependent grain (silver clumps), not white noise."""
    x = _check(x)
    out = np.empty_like(x)
    for i in range(len(x)):
        g = ndimage.gaussian_filter(rng.standard_normal(x.shape[2:]), rng.uniform(*corr))
        g = (g / (g.std() + 1e-8)).astype(np.float32)
        out[i] = x[i] + rng.uniform(*std) * g[None] * (0.5 + x[i])  # all channels share the grain
    return np.clip(out, 0, 1)


def curved_scratches(x: np.ndarray, rng: np.random.Generator, count: tuple[int, int] = (1, 3)) -> np.ndarray:
    """Thin curved hairs/scratches (a random quadratic arc) and a few 1-pixel spots."""
    x = _check(x).copy()
    n, _, h, w = x.shape
    for i in range(n):
        for _ in range(rng.integers(count[0], count[1] + 1)):
            t = np.linspace(0, 1, 3 * max(h, w))
            p0, p1, p2 = (rng.uniform(0, [h, w]) for _ in range(3))
            pts = ((1 - t) ** 2)[:, None] * p0 + (2 * t * (1 - t))[:, None] * p1 + (t**2)[:, None] * p2
            rr, cc = np.clip(pts[:, 0].astype(int), 0, h - 1), np.clip(pts[:, 1].astype(int), 0, w - 1)
            x[i, :, rr, cc] = rng.choice([0.1, 0.85])
        spots = rng.integers(0, 4)
        x[i, :, rng.integers(0, h, spots), rng.integers(0, w, spots)] = 0.05
    return x


def vignette(x: np.ndarray, rng: np.random.Generator, strength: tuple[float, float] = (0.2, 0.5)) -> np.ndarray:
    """Darkening towards an off-centre border (the crop sits somewhere in a vignetted print)."""
    x = _check(x)
    n, _, h, w = x.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    out = np.empty_like(x)
    for i in range(n):
        cy, cx = rng.uniform(-0.5, 1.5) * h, rng.uniform(-0.5, 1.5) * w
        d2 = ((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2
        out[i] = x[i] * (1 - rng.uniform(*strength) * np.clip(d2, 0, 1))[None]
    return out


def uneven_fading(x: np.ndarray, rng: np.random.Generator, amount: tuple[float, float] = (0.1, 0.6)) -> np.ndarray:
    """Fading whose strength ramps across the crop (a print faded unevenly), towards a yellowish white."""
    x = _check(x)
    n, c, h, w = x.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    tint = np.full((c, 1, 1), 0.8, np.float32) if c == 1 else np.array([0.85, 0.8, 0.65], np.float32)[:c, None, None]
    out = np.empty_like(x)
    for i in range(n):
        theta = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(theta) * yy / h + np.sin(theta) * xx / w
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-8)
        lo, hi = sorted(rng.uniform(*amount, size=2))
        a = (lo + (hi - lo) * ramp)[None]
        out[i] = (1 - a) * x[i] + a * tint
    return out


FAMILIES = {
    "blur": blur,
    "noise": noise,
    "scratches": scratches,
    "dust": dust,
    "fading": fading,
    "low_light": low_light,
    "jpeg": jpeg,
    "defocus": defocus,
    "film_grain": film_grain,
    "curved_scratches": curved_scratches,
    "vignette": vignette,
    "uneven_fading": uneven_fading,
}
OLD_PHOTO = ("blur", "fading", "noise", "scratches", "dust")
# Family B (fixed before any seed-2 run): every operation differs in kind from family A's.
OLD_PHOTO_B = ("defocus", "uneven_fading", "vignette", "film_grain", "curved_scratches")
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
