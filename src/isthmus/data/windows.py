"""Sliding windows over multivariate time series: ``(T, C)`` → ``(N, window, C)``.

Windows are cut with a strided view and then copied, so the result is an ordinary contiguous
array (a view would alias overlapping memory, and writing into it would corrupt neighbours).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from isthmus.data.validation import DataError, as_numpy

__all__ = ["sliding_windows", "window_labels", "n_windows"]


def n_windows(length: int, window: int, stride: int = 1) -> int:
    """How many full windows fit: ``(length - window) // stride + 1`` (after validating arguments)."""
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise DataError(f"window must be a positive integer, got {window!r}")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise DataError(f"stride must be a positive integer, got {stride!r}")
    if window > length:
        raise DataError(
            f"window={window} is longer than the series ({length} time steps); "
            f"use window <= {length} or a longer series"
        )
    return (length - window) // stride + 1


def sliding_windows(X: Any, window: int, stride: int = 1) -> Any:
    """Windows of ``window`` consecutive steps every ``stride`` steps, as a copy.

    ``X`` is ``(T, C)`` (or ``(T,)``, treated as one channel), numpy or torch; the result has the
    same kind and dtype, shape ``(N, window, C)`` with ``N = (T - window) // stride + 1``.
    Trailing steps that do not fill a whole window are dropped.
    """
    if isinstance(X, torch.Tensor):
        t = X[:, None] if X.ndim == 1 else X
        _check_series(tuple(t.shape))
        n_windows(t.shape[0], window, stride)
        return t.unfold(0, window, stride).permute(0, 2, 1).contiguous()  # (N, C, window) → (N, window, C)
    x = as_numpy(X)
    x = x[:, None] if x.ndim == 1 else x
    _check_series(x.shape)
    n_windows(x.shape[0], window, stride)
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)[::stride]  # (N, C, window)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


def _check_series(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise DataError(
            f"sliding_windows expects a series of shape (T, C) or (T,), got {shape}; "
            "for several series, window each one and concatenate the results"
        )


def window_labels(labels: Any, window: int, stride: int = 1, how: str = "any") -> np.ndarray:
    """One label per window of :func:`sliding_windows`: ``"any"`` (1 if any step is anomalous,
    the usual rule for anomaly detection) or ``"last"`` (the label of the window's last step)."""
    y = as_numpy(labels).reshape(-1)
    n = n_windows(len(y), window, stride)
    if how == "last":
        return y[window - 1 :: stride][:n].copy()
    if how == "any":
        view = np.lib.stride_tricks.sliding_window_view(y != 0, window)[::stride]
        return np.asarray(view.any(axis=1), dtype=np.int64)
    raise DataError(f"window_labels: how must be 'any' or 'last', got {how!r}")
