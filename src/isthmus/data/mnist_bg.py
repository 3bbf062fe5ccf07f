"""MNIST-bg: MNIST digits composited onto grey photo patches (Larochelle et al. 2007, "mnist-back-image").

The digit is laid over the background with a pixel-wise maximum, so strokes stay white and the clutter of a
real photograph fills the rest. Backgrounds come from :func:`isthmus.data.photos.photo_patches`, which
splits **by photo**: a train image never shares a photograph with a test image, so a representation is
judged on backgrounds it never saw (the referee cards' construction for seeds 9, 30 and 37).
"""

from __future__ import annotations

import numpy as np

from isthmus.data.photos import photo_patches

__all__ = ["mnist_background", "mnist_bg_split"]


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


def mnist_bg_split(n_pretrain: int, n_val: int, n_test: int, root: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The referee cards' MNIST-bg split of MNIST t10k: ``(x_pretrain, y_pretrain, x_val, x_test, y_test)``.

    Digits 0–7,999 go on train-photo patches (pretraining first, then validation); digits 8,000+ go on
    test-photo patches. Images are ``(N, 1, 28, 28)`` float32.
    """
    from isthmus.data.paths import load_mnist

    if n_pretrain + n_val > 8000 or n_test > 2000 or min(n_pretrain, n_val, n_test) < 1:
        raise ValueError("MNIST-bg uses digits < 8,000 for pretrain + val (at most 8,000) and the last 2,000 for "
                         f"test; got {n_pretrain} + {n_val} and {n_test}")
    t = load_mnist(root)
    tr = mnist_background(t.X[:n_pretrain + n_val], "train", seed=0)
    te = mnist_background(t.X[8000:8000 + n_test], "test", seed=1)
    return tr[:n_pretrain], np.asarray(t.y[:n_pretrain]), tr[n_pretrain:], te, np.asarray(t.y[8000:8000 + n_test])
