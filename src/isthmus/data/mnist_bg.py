"""MNIST-bg: MNIST digits over grey patches of real photographs (Larochelle et al. 2007, "mnist-back-image"),
made locally from MNIST and the photographs bundled in scikit-image (nothing is downloaded).

Two compositing rules, both kept because recipes were pre-registered on each:

* :func:`mnist_background` / :func:`mnist_bg_split` — pixel-wise maximum of digit and background, with
  backgrounds from :func:`isthmus.data.photos.photo_patches`, which splits **by photo**: a train image never
  shares a photograph with a test image (the referee cards' construction for seeds 9 and 30).
* :func:`add_backgrounds` — ``digit + (1 − digit) · strength · background``: the digit's grey level is its
  opacity; random crops of :data:`isthmus.data.photos.TRAIN_PHOTOS`, all drawn from ``seed`` (seed 37).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from isthmus.data.photos import photo_patches

__all__ = ["mnist_background", "mnist_bg_split", "add_backgrounds", "grey_photos"]


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


def mnist_bg_split(
    n_pretrain: int, n_val: int, n_test: int, root: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The referee cards' MNIST-bg split of MNIST t10k: ``(x_pretrain, y_pretrain, x_val, x_test, y_test)``.

    Digits 0–7,999 go on train-photo patches (pretraining first, then validation); digits 8,000+ go on
    test-photo patches. Images are ``(N, 1, 28, 28)`` float32.
    """
    from isthmus.data.paths import load_mnist

    if n_pretrain + n_val > 8000 or n_test > 2000 or min(n_pretrain, n_val, n_test) < 1:
        raise ValueError(
            "MNIST-bg uses digits < 8,000 for pretrain + val (at most 8,000) and the last 2,000 for "
            f"test; got {n_pretrain} + {n_val} and {n_test}"
        )
    t = load_mnist(root)
    if t.y is None:
        raise ValueError("the MNIST table has no labels")
    tr = mnist_background(t.X[: n_pretrain + n_val], "train", seed=0)
    te = mnist_background(t.X[8000 : 8000 + n_test], "test", seed=1)
    return tr[:n_pretrain], np.asarray(t.y[:n_pretrain]), tr[n_pretrain:], te, np.asarray(t.y[8000 : 8000 + n_test])


def grey_photos(names: Sequence[str] | None = None) -> list[np.ndarray]:
    """The named photos (default: the train photos of :mod:`isthmus.data.photos`) as grey ``(H, W)`` in [0, 1]."""
    from isthmus.data.photos import TRAIN_PHOTOS, load_photo

    out = []
    for name in names or TRAIN_PHOTOS:
        rgb = load_photo(name)
        out.append((rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32))
    return out


def add_backgrounds(
    digits: np.ndarray, seed: int = 0, photos: Sequence[np.ndarray] | None = None, strength: float = 0.7
) -> np.ndarray:
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
    which = np.asarray(rng.integers(0, len(pool), n))
    bg = np.empty_like(x)
    for i in range(n):
        p = pool[int(which[i])]
        r, c = rng.integers(0, p.shape[0] - h + 1), rng.integers(0, p.shape[1] - w + 1)
        bg[i] = p[r : r + h, c : c + w]
    return x + (1.0 - x) * strength * bg
