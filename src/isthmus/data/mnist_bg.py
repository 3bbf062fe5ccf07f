"""MNIST-bg: MNIST digits composited onto grey photo patches (Larochelle et al. 2007, "mnist-back-image").

The digit is laid over the background with a pixel-wise maximum, so strokes stay white and the clutter of a
real photograph fills the rest. Backgrounds come from :func:`isthmus.data.photos.photo_patches`, which
splits **by photo**: a train image never shares a photograph with a test image, so a representation is
judged on backgrounds it never saw (the referee cards' construction for seeds 9, 30 and 37).
"""

from __future__ import annotations

import numpy as np

from isthmus.data.photos import photo_patches

__all__ = ["mnist_background"]


def mnist_background(digits: np.ndarray, split: str, seed: int = 0) -> np.ndarray:
    """``digits`` ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` in [0, 1] → ``(N, 1, 28, 28)`` float32 composites on
    grey patches of the ``split`` (``"train"`` / ``"test"``) photos; ``seed`` picks the patches."""
    d = np.asarray(digits, dtype=np.float32)
    if d.ndim == 4 and d.shape[1] == 1:
        d = d[:, 0]
    if d.ndim != 3 or d.shape[1] != d.shape[2]:
        raise ValueError(f"digits must be (N, S, S) or (N, 1, S, S) square images, got shape {np.shape(digits)}")
    if d.size and (d.min() < 0.0 or d.max() > 1.0):
        raise ValueError(f"digits must lie in [0, 1] (got [{d.min():.3g}, {d.max():.3g}]); divide uint8 images by 255")
    bg = photo_patches(split, len(d), size=d.shape[1], seed=seed, gray=True)[:, 0]
    return np.maximum(d, bg)[:, None].astype(np.float32)
