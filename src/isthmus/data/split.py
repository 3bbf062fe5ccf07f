"""Seeded train/validation splits, optionally stratified by class.

Implemented with numpy (no scikit-learn) so the split is identical across library versions for a
given seed, which keeps recipe results reproducible.
"""

from __future__ import annotations

from typing import Any, overload

import numpy as np

from isthmus.data.table import Table
from isthmus.data.validation import DataError, as_numpy

__all__ = ["train_val_split", "split_indices"]


def _n_val(n: int, val_fraction: float) -> int:
    if not isinstance(val_fraction, (float, int)) or not 0.0 < float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    if n < 2:
        raise DataError(f"cannot split {n} sample(s) into non-empty train and validation parts; need at least 2")
    # at least one sample on each side, however small the fraction
    return int(min(max(round(n * float(val_fraction)), 1), n - 1))


def _stratified(labels: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Validation indices taking about ``val_fraction`` of every class (singleton classes stay in train)."""
    val = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        k = int(round(len(members) * val_fraction)) if len(members) > 1 else 0
        k = min(k, len(members) - 1)
        val.append(rng.permutation(members)[:k])
    return np.concatenate(val) if val else np.empty(0, dtype=np.int64)


def split_indices(
    n: int, val_fraction: float = 0.2, seed: int = 0, stratify: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, disjoint ``(train_idx, val_idx)`` covering ``range(n)``; same seed → same split."""
    n_val = _n_val(int(n), val_fraction)
    rng = np.random.default_rng(seed)
    if stratify is None:
        val = rng.permutation(n)[:n_val]
    else:
        labels = as_numpy(stratify).reshape(-1)
        if len(labels) != n:
            raise DataError(f"stratify has {len(labels)} labels for {n} samples; pass one label per sample")
        val = _stratified(labels, float(val_fraction), rng)
        if len(val) == 0:
            raise DataError(
                "stratified split left the validation set empty; every class has one sample "
                "or val_fraction is too small"
            )
    mask = np.zeros(n, dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


@overload
def train_val_split(
    table_or_n: int, val_fraction: float = ..., seed: int = ..., stratify: Any = ...
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def train_val_split(
    table_or_n: Table, val_fraction: float = ..., seed: int = ..., stratify: Any = ...
) -> tuple[Table, Table]: ...


def train_val_split(table_or_n, val_fraction=0.2, seed=0, stratify=None):
    """Split a :class:`Table` into ``(train, val)`` Tables, or ``range(n)`` into index arrays.

    ``stratify`` keeps class proportions: ``True`` uses the table's ``y``, or pass one label per
    sample. Indices are returned sorted, so within each part rows keep their original order.
    For time series, split by time instead (a random split leaks the future into training).
    """
    if isinstance(table_or_n, (int, np.integer)) and not isinstance(table_or_n, bool):
        if stratify is True:
            raise DataError("stratify=True needs a Table with y; with an int, pass the labels array")
        return split_indices(int(table_or_n), val_fraction, seed, stratify)
    if not isinstance(table_or_n, Table):
        raise DataError(f"train_val_split takes a Table or a sample count, got {type(table_or_n).__name__}")
    table = table_or_n
    if stratify is True:
        if table.y is None:
            raise DataError("stratify=True but the table has no labels y; pass labels or stratify=None")
        stratify = table.y
    train_idx, val_idx = split_indices(len(table), val_fraction, seed, stratify)
    train, val = table.subset(train_idx), table.subset(val_idx)
    train.meta["split"], val.meta["split"] = "train", "val"
    return train, val
