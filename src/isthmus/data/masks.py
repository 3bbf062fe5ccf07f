"""Edit masks and edits for inpainting-style experiments (LaDI-VTON's EMASC recipe, seed 40).

:func:`blob_masks` draws smooth random blobs (Gaussian-filtered noise thresholded at the quantile that
gives a coverage drawn from ``cover``); :func:`paste_texture` replaces the masked region of each image by
a texture crop (the "new garment"), so outside the mask the edited image equals the original.
:func:`mask_regions` splits a mask into *inside*, *outside* and a seam *band* of ``±width`` pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["blob_masks", "paste_texture", "mask_regions"]


def blob_masks(
    n: int, size: int, cover: tuple[float, float] = (0.15, 0.35), smooth: float = 4.0, seed: int = 0
) -> np.ndarray:
    """``(n, 1, size, size)`` float32 masks of 0/1, each covering a fraction drawn uniformly from ``cover``."""
    lo, hi = cover
    if not 0 < lo <= hi < 1:
        raise ValueError(f"cover must satisfy 0 < lo <= hi < 1, got {cover}")
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), smooth, mode="wrap")
        out[i, 0] = field > np.quantile(field, 1 - rng.uniform(lo, hi))
    return out


def paste_texture(images: np.ndarray, masks: np.ndarray, textures: np.ndarray) -> np.ndarray:
    """``images·(1 − m) + textures·m`` for ``(N, C, H, W)`` arrays (masks ``(N, 1, H, W)``)."""
    if images.shape != textures.shape or masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"shapes disagree: images {images.shape}, masks {masks.shape}, textures {textures.shape}")
    return (images * (1 - masks) + textures * masks).astype(np.float32)


def mask_regions(masks: np.ndarray, width: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inside, outside, band)`` boolean arrays of ``masks``' shape: the band is every pixel within
    ``width`` px of the mask edge (both sides); inside and outside exclude it."""
    m = np.asarray(masks) > 0.5
    st = np.ones((1,) * (m.ndim - 2) + (3, 3), bool)
    grown = ndimage.binary_dilation(m, st, iterations=width) if width else m
    shrunk = ndimage.binary_erosion(m, st, iterations=width, border_value=1) if width else m
    band = grown & ~shrunk
    return shrunk & ~band, ~grown, band
