"""``Table``: the one in-memory form every isthmus loader returns.

Features are a float32 array ``X`` whose first axis is the sample axis: ``(N, D)`` for tables,
``(N, C, H, W)`` for images, ``(N, T, C)`` for windows. Labels ``y`` are optional. ``meta`` carries
provenance (source path), class names, factor names and per-row extras.

Rule for ``meta``: a numpy array in ``meta`` whose first axis has one entry per row (entity ids,
ground-truth factors, file names) is per-row data and follows :meth:`Table.subset`; anything else
(lists, dicts, tuples, scalars) describes the whole table and is copied as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from isthmus.data.validation import DataError

__all__ = ["Table"]


@dataclass
class Table:
    """Samples ``X`` (float32, sample axis first), optional labels ``y`` and metadata.

    >>> t = Table(np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
    >>> len(t), t.X.dtype, t.subset([0, 2]).y.tolist()
    (4, dtype('float32'), [0, 0])
    """

    X: np.ndarray
    y: np.ndarray | None = None
    feature_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.X, torch.Tensor):
            self.X = self.X.detach().cpu().numpy()
        self.X = np.asarray(self.X, dtype=np.float32)
        if self.X.ndim == 0:
            raise DataError("Table.X must have a sample axis; got a scalar")
        if self.y is not None:
            if isinstance(self.y, torch.Tensor):
                self.y = self.y.detach().cpu().numpy()
            self.y = np.asarray(self.y)
            if len(self.y) != len(self.X):
                raise DataError(
                    f"Table: X has {len(self.X)} rows but y has {len(self.y)}; they must describe the same samples"
                )
        if self.feature_names is not None:
            self.feature_names = [str(n) for n in self.feature_names]
            if self.X.ndim != 2 or len(self.feature_names) != self.X.shape[1]:
                raise DataError(
                    f"Table: {len(self.feature_names)} feature names for X of shape "
                    f"{self.X.shape}; give one name per column of a 2-D X"
                )

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_features(self) -> int:
        """Numbers per sample (``D`` for tables, ``C*H*W`` for images)."""
        return int(np.prod(self.X.shape[1:]))

    def _is_row_meta(self, value: Any) -> bool:
        return isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == len(self.X)

    def subset(self, idx: Any) -> "Table":
        """Rows ``idx`` (indices, a boolean mask or a slice) as a new Table; per-row meta follows."""
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
            if idx.dtype == bool and len(idx) != len(self):
                raise DataError(f"Table.subset: boolean mask has {len(idx)} entries for {len(self)} rows")
        meta = {k: (v[idx] if self._is_row_meta(v) else v) for k, v in self.meta.items()}
        y = None if self.y is None else self.y[idx]
        names = None if self.feature_names is None else list(self.feature_names)
        return Table(self.X[idx], y, names, meta)

    def to_tensors(self) -> tuple[torch.Tensor, ...]:
        """``(X,)`` or ``(X, y)`` as tensors; integer labels become int64 (what losses expect)."""
        X = torch.from_numpy(np.ascontiguousarray(self.X))
        if self.y is None:
            return (X,)
        y = np.ascontiguousarray(self.y)
        if y.dtype.kind in "biu":
            return X, torch.from_numpy(y.astype(np.int64))
        if y.dtype.kind == "f":
            return X, torch.from_numpy(y.astype(np.float32))
        raise DataError(f"Table.y has dtype {y.dtype}; encode labels as integers before making tensors")

    def as_dataset(self) -> TensorDataset:
        """A ``TensorDataset`` for a ``DataLoader``: items are ``(x,)`` or ``(x, y)``."""
        return TensorDataset(*self.to_tensors())

    def __repr__(self) -> str:
        y = "None" if self.y is None else f"{self.y.shape}"
        src = self.meta.get("source", "?")
        return f"Table(X={self.X.shape} float32, y={y}, source={src!r})"
