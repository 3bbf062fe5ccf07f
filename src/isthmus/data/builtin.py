"""Data sets that ship inside installed packages or are generated, so they work offline anywhere.

* :func:`load_digits` — scikit-learn's 1,797 8x8 handwritten digits (bundled in its wheel).
* :func:`load_digit_split` — MNIST t10k (local copy) split train/test, falling back to digits.
* :func:`make_shapes` — procedural dSprites-like images with known factors (see ``shapes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isthmus.data.shapes import make_shapes
from isthmus.data.table import Table

__all__ = ["load_digits", "make_shapes", "DigitSplit", "load_digit_split"]


def load_digits(as_images: bool = False) -> Table:
    """scikit-learn digits: X ``(1797, 64)`` in [0, 1] (pixel counts 0..16 divided by 16), y 0..9.

    ``as_images=True`` gives X ``(1797, 1, 8, 8)`` for convolutional models. ``meta['image_shape']``
    is ``(8, 8)`` either way.
    """
    from sklearn.datasets import load_digits as _sk_load_digits  # imported late: sklearn is slow to import

    bunch = _sk_load_digits()
    X = bunch.data.astype(np.float32) / 16.0  # raw values are counts of set pixels in 4x4 blocks, 0..16
    if as_images:
        X = X.reshape(-1, 1, 8, 8)  # (N, C, H, W)
    meta = {"source": "sklearn.datasets.load_digits", "image_shape": (8, 8), "classes": list(range(10))}
    names = None if as_images else [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    return Table(X, bunch.target.astype(np.int64), names, meta)


@dataclass
class DigitSplit:
    """A fixed train/test split of flattened digit images (MNIST t10k, or digits as a fallback).

    ``x_*`` float32 ``(N, H*W)`` in [0, 1], ``y_*`` int64; ``image_shape`` is ``(H, W)``;
    ``source`` is ``"mnist"`` or ``"digits"``; ``description`` says which and the sizes.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    source: str
    description: str


def load_digit_split(n_train: int = 8000, n_test: int = 2000, seed: int = 0) -> DigitSplit:
    """MNIST t10k from the local data folder split ``n_train``/``n_test``; when it is absent, scikit-learn
    digits split 1397/400 at most (the description says so). The permutation depends on ``seed`` only."""
    from isthmus.data.paths import DataNotFoundError, load_mnist

    try:
        table, source, name = load_mnist(), "mnist", "MNIST t10k (local copy)"
    except DataNotFoundError:
        table, source, name = load_digits(), "digits", "scikit-learn digits (MNIST not found)"
        n_train, n_test = min(n_train, 1397), min(n_test, 400)
    assert table.y is not None  # both loaders return labels
    X = np.ascontiguousarray(table.X.reshape(len(table.X), -1), dtype=np.float32)
    side = int(round(X.shape[1] ** 0.5))
    perm = np.random.default_rng(seed).permutation(len(X))
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    return DigitSplit(
        X[tr],
        table.y[tr].astype(np.int64),
        X[te],
        table.y[te].astype(np.int64),
        (side, side),
        source,
        f"{name}: {len(tr)} train / {len(te)} test, {side}x{side} pixels",
    )
