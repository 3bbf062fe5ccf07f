"""Reconstruction metrics: MSE, binary cross-entropy, PSNR and per-sample MSE.

Every function accepts numpy arrays, torch tensors (any device, grads ignored) or nested lists,
checks that ``x`` and ``x_hat`` have exactly the same shape (no broadcasting: a ``(N, 1)`` vs
``(N,)`` mix-up would otherwise silently average an ``N × N`` matrix), and returns Python floats
(or a numpy vector for :func:`per_sample_mse`). Computation is in float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from isthmus.metrics._arrays import check_same_shape, to_numpy

__all__ = ["mse", "bce", "psnr", "per_sample_mse"]


def _pair(x: Any, x_hat: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_numpy(x, "x"), to_numpy(x_hat, "x_hat")
    check_same_shape(a, b)
    return a, b


def mse(x: Any, x_hat: Any) -> float:
    """Mean squared error over all elements."""
    a, b = _pair(x, x_hat)
    return float(np.mean((a - b) ** 2))


def per_sample_mse(x: Any, x_hat: Any) -> np.ndarray:
    """MSE of each sample (axis 0), averaged over all other axes; shape ``(N,)``."""
    a, b = _pair(x, x_hat)
    if a.ndim == 0:
        raise ValueError("per_sample_mse needs at least one axis (the sample axis)")
    sq = (a - b) ** 2
    return sq.reshape(sq.shape[0], -1).mean(axis=1)


def bce(x: Any, x_hat: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of targets ``x`` in [0, 1] under probabilities ``x_hat``.

    ``x_hat`` is clipped to ``[eps, 1 - eps]`` so a confident wrong pixel costs ``-log(eps)``
    instead of ``inf``. Pass probabilities, not logits.
    """
    a, b = _pair(x, x_hat)
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    if np.nanmin(a) < 0 or np.nanmax(a) > 1:
        raise ValueError("bce targets x must lie in [0, 1]; rescale the data (e.g. x / 255)")
    p = np.clip(b, eps, 1.0 - eps)
    return float(np.mean(-(a * np.log(p) + (1.0 - a) * np.log1p(-p))))


def psnr(x: Any, x_hat: Any, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / MSE)``; ``inf`` when MSE is 0."""
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    err = mse(x, x_hat)
    if err == 0.0:
        return math.inf
    return float(10.0 * math.log10(data_range**2 / err))
