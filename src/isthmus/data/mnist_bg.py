"""MNIST-bg: MNIST digits over random patches of real photographs (Larochelle et al. 2007's
``mnist-back-image`` idea), made locally from MNIST and the photographs bundled in scikit-image.

Each image is ``digit + (1 − digit) · background``: the digit's grey level is its opacity, so the
strokes stay white and the photo patch shows through elsewhere. Backgrounds are random 28×28 grey
crops of :data:`isthmus.data.photos.TRAIN_PHOTOS` (nothing is downloaded), scaled by ``strength`` so
the digit stays the brightest thing in the image. Everything is drawn from ``seed``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["add_backgrounds", "grey_photos"]


def grey_photos(names: Sequence[str] | None = None) -> list[np.ndarray]:
    """The named photos (default: the train photos of :mod:`isthmus.data.photos`) as grey ``(H, W)`` in [0, 1]."""
    from isthmus.data.photos import TRAIN_PHOTOS, load_photo

    out = []
    for name in names or TRAIN_PHOTOS:
        rgb = load_photo(name)
        out.append((rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32))
    return out


def add_backgrounds(digits: np.ndarray, seed: int = 0, photos: Sequence[np.ndarray] | None = None,
                    strength: float = 0.7) -> np.ndarray:
    """``(N, H, W)`` digits in [0, 1] → the same digits over random photo crops, float32 in [0, 1]."""
    x = np.asarray(digits, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"digits must be (N, H, W), got shape {x.shape}")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"digits must lie in [0, 1] (divide uint8 MNIST by 255), got [{x.min()}, {x.max()}]")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    pool = list(photos) if photos is not None else grey_photos()
    n, h, w = x.shape
    for p in pool:
        if p.ndim != 2 or p.shape[0] < h or p.shape[1] < w:
            raise ValueError(f"every photo must be a grey (H, W) array of at least {h}x{w}, got {p.shape}")
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(pool), n)
    bg = np.empty_like(x)
    for i, k in enumerate(which):
        p = pool[k]
        r, c = rng.integers(0, p.shape[0] - h + 1), rng.integers(0, p.shape[1] - w + 1)
        bg[i] = p[r:r + h, c:c + w]
    return x + (1.0 - x) * strength * bg
