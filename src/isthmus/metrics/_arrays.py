"""Input coercion shared by the metric modules: numpy arrays, torch tensors or lists → numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["to_numpy", "check_same_shape", "to_labels"]


def to_numpy(a: Any, name: str = "array", dtype: Any = np.float64) -> np.ndarray:
    """Return ``a`` as a numpy array (tensors are detached and moved to CPU first)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu")
        # bfloat16/float16 have no numpy twin everywhere; widen before converting.
        if a.is_floating_point():
            a = a.double()
        a = a.numpy()
    try:
        return np.asarray(a, dtype=dtype) if dtype is not None else np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from None


def check_same_shape(x: np.ndarray, x_hat: np.ndarray) -> None:
    """Raise a ValueError naming both shapes; silent broadcasting would give a wrong number."""
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if x.size == 0:
        raise ValueError("x and x_hat are empty; a metric over zero elements is undefined")


def to_labels(y: Any, name: str) -> np.ndarray:
    """A 1-D label vector (ints or strings); tensors become numpy."""
    arr = to_numpy(y, name=name, dtype=None)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample), got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr
