"""Data sets that ship inside installed packages or are generated, so they work offline anywhere.

* :func:`load_digits` — scikit-learn's 1,797 8x8 handwritten digits (bundled in its wheel).
* :func:`make_shapes` — procedural dSprites-like images with known factors (see ``shapes.py``).
"""

from __future__ import annotations

import numpy as np

from isthmus.data.shapes import make_shapes
from isthmus.data.table import Table

__all__ = ["load_digits", "make_shapes"]


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
