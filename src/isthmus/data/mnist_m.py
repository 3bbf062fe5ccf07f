"""MNIST-M built offline (Ganin et al. 2016): each digit blended with a colour photo patch as
``|patch − digit|`` per channel, so the digit shows as an inversion of a textured background.

Digits come from the local MNIST t10k file; patches from the photos bundled with scikit-image and
scikit-learn (:mod:`isthmus.data.photos`). With ``disjoint_photos=True`` train patches come from the train
photos and test patches from the test photos (no background texture shared: a domain shift); with
``False`` both splits draw their (different) patches from one pool of all photos, as Ganin et al. draw
from one photo collection. Deterministic per ``seed``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mnist_m", "blend_mnist_m"]


def blend_mnist_m(digits: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """``|patch − digit|`` with digits ``(n, 1, H, W)`` and patches ``(n, 3, H, W)`` in [0, 1]."""
    if digits.shape[0] != patches.shape[0] or digits.shape[2:] != patches.shape[2:] or digits.shape[1] != 1:
        raise ValueError(
            f"digits (n, 1, H, W) and patches (n, 3, H, W) must match, got {digits.shape}, {patches.shape}"
        )
    return np.abs(patches - digits).astype(np.float32)


def mnist_m(
    n_train: int = 8000, n_test: int = 2000, seed: int = 0, disjoint_photos: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)``: ``(n, 3, 28, 28)`` float32 in [0, 1] and digit labels; the two
    splits use disjoint t10k digits (and disjoint photos when ``disjoint_photos``)."""
    from isthmus.data.paths import load_mnist
    from isthmus.data.photos import photo_patches

    t = load_mnist(split="test")
    if n_train + n_test > len(t.X):
        raise ValueError(f"n_train + n_test must be <= {len(t.X)} (MNIST t10k), got {n_train + n_test}")
    X = np.asarray(t.X, dtype=np.float32).reshape(len(t.X), 1, 28, 28)
    idx = np.random.default_rng(seed).permutation(len(X))
    tr, te = idx[:n_train], idx[n_train : n_train + n_test]
    if disjoint_photos:
        p_tr = photo_patches("train", n_train, size=28, seed=seed)
        p_te = photo_patches("test", n_test, size=28, seed=seed + 1)
    else:
        n = n_train + n_test
        pool = np.concatenate(
            [
                photo_patches("train", n - n // 2, size=28, seed=seed),
                photo_patches("test", n // 2, size=28, seed=seed + 1),
            ]
        )
        pool = pool[np.random.default_rng(seed + 2).permutation(n)]
        p_tr, p_te = pool[:n_train], pool[n_train:]
    y = np.asarray(t.y, dtype=np.int64)
    return blend_mnist_m(X[tr], p_tr), y[tr], blend_mnist_m(X[te], p_te), y[te]
