"""Input checks that fail early, name the bad value's location, and say how to fix it.

A model that trains on a NaN produces NaN weights many steps later, far from the cause. These
checks run once, when data enters the library, so the error points at the file, column and row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["DataError", "validate_array", "check_feature_count", "as_numpy"]


class DataError(ValueError):
    """Data is missing, malformed or does not fit the model; the message names where and the fix."""


def as_numpy(X: Any) -> np.ndarray:
    """A numpy view/copy of ``X`` (numpy array, torch tensor or nested lists), without validation."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return X if isinstance(X, np.ndarray) else np.asarray(X)


def _ragged_message(X: Sequence, name: str) -> str:
    """Find the first row whose length differs from row 0 (numpy only says 'inhomogeneous')."""
    first = len(X[0]) if hasattr(X[0], "__len__") else None
    for i, row in enumerate(X):
        length = len(row) if hasattr(row, "__len__") else None
        if length != first:
            return (
                f"{name}: rows have different lengths (row 0 has {first}, row {i} has {length}); "
                "pad or trim rows to the same number of features"
            )
    return f"{name}: rows have different lengths; pad or trim rows to the same number of features"


def _location(index: tuple[int, ...], feature_names: Sequence[str] | None) -> str:
    """Human-readable 'row 12, column 'cpu_load'' for a 2-D index, 'index (i, j, k)' otherwise."""
    if len(index) == 1:
        return f"row {index[0]}"
    if len(index) == 2:
        col = f"'{feature_names[index[1]]}'" if feature_names is not None else str(index[1])
        return f"row {index[0]}, column {col}"
    return f"row {index[0]}, element {tuple(int(i) for i in index[1:])}"


def _to_array(X: Any, name: str) -> np.ndarray:
    try:
        return as_numpy(X)
    except ValueError as exc:  # numpy refuses ragged nested lists
        if isinstance(X, Sequence) and len(X) > 0:
            raise DataError(_ragged_message(X, name)) from None
        raise DataError(f"{name}: cannot be read as an array ({exc})") from None


def _check_dtype(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind in "biuf":
        return
    if arr.dtype.kind == "c":
        raise DataError(
            f"{name}: complex values are not supported; pass the real and imaginary parts "
            "as separate features (np.real / np.imag)"
        )
    if arr.dtype.kind in "USa":
        raise DataError(
            f"{name}: contains text (dtype {arr.dtype}); convert it to numbers "
            "(e.g. one-hot encode categories) or drop the text columns"
        )
    if arr.dtype.kind == "O":
        flat = arr.reshape(-1)
        for i, v in enumerate(flat):
            if hasattr(v, "__len__") and not isinstance(v, str):
                raise DataError(_ragged_message(list(arr), name))
            if not isinstance(v, (int, float, np.number, bool, np.bool_)):
                where = _location(tuple(int(j) for j in np.unravel_index(i, arr.shape)), None)
                raise DataError(f"{name}: non-numeric value {v!r} at {where}; convert or drop it")
        return
    raise DataError(f"{name}: unsupported dtype {arr.dtype}; expected numbers")


def validate_array(
    X: Any,
    name: str = "data",
    allow_nan: bool = False,
    feature_names: Sequence[str] | None = None,
    min_ndim: int = 1,
) -> np.ndarray:
    """Check ``X`` is a non-empty, rectangular, numeric, finite array and return it as numpy.

    ``name`` (a file path, a variable name) starts every message; ``feature_names`` lets a 2-D
    error name the column. Raises :class:`DataError` for empty, ragged, text/object/complex input
    and for NaN/inf (NaN is allowed with ``allow_nan=True``; inf never is).
    """
    arr = _to_array(X, name)
    _check_dtype(arr, name)
    if arr.dtype.kind == "O":
        arr = arr.astype(np.float64)
    if arr.ndim < min_ndim or arr.size == 0:
        raise DataError(f"{name}: is empty (shape {arr.shape}); it needs at least one row with one value")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) if not allow_nan else np.isinf(arr)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            value = arr[index]
            kind = "NaN" if np.isnan(value) else "infinite value"
            fix = (
                "impute or drop rows"
                if kind == "NaN"
                else "clip or drop the row; inf often comes from dividing by zero or a log of 0"
            )
            raise DataError(
                f"{name}: contains {int(bad.sum())} non-finite value(s); {fix}; "
                f"first {kind} at {_location(index, feature_names)}"
            )
    return arr


def check_feature_count(X: Any, expected: int | Sequence[int], source: str = "data") -> None:
    """Raise :class:`DataError` unless each sample of ``X`` has the shape the model was built for.

    ``expected`` is a feature count (``64``) or a per-sample shape (``(1, 28, 28)``).
    """
    shape = tuple(as_numpy(X).shape) if not hasattr(X, "shape") else tuple(X.shape)
    want = (int(expected),) if isinstance(expected, (int, np.integer)) else tuple(int(e) for e in expected)
    got = shape[1:]
    if got == want:
        return
    if len(want) == 1 and int(np.prod(got)) == want[0] and len(got) > 1:
        hint = f"flatten each sample first (X.reshape(len(X), -1)) to get {want[0]} features"
    else:
        hint = (
            "use the same columns, in the same order, as the data the model was fitted on, "
            "or fit a new model for this data"
        )
    raise DataError(
        f"{source}: wrong shape for the model: expected {want} per sample, got {got} (data shape {shape}); {hint}"
    )
