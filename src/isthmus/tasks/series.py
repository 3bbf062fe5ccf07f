"""Anomaly scores per time step and per channel for multivariate series, batch and streaming.

:class:`SeriesDetector` cuts a ``(T, C)`` series into sliding windows of ``window`` steps,
flattens each to ``window * C`` features and fits an :class:`~isthmus.tasks.anomaly.AnomalyDetector`
on them (so lags between channels, e.g. temperature following power, become learnable). The
score of time step t is the score of the window *ending* at t, so it only uses the past and a
stream can produce it the moment step t arrives; the first ``window - 1`` steps have no full
window and share the first window's score. :class:`StreamScorer` keeps only the last ``window``
rows (bounded memory) and returns exactly the batch scores.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from isthmus.data.validation import DataError, validate_array
from isthmus.data.windows import n_windows, sliding_windows
from isthmus.tasks.anomaly import AnomalyDetector
from isthmus.tasks.anomaly_base import refuse_no_features, refuse_unsupported

__all__ = ["SeriesDetector", "StreamScorer"]


def _series(X: Any, name: str = "series") -> np.ndarray:
    refuse_unsupported(X)  # sparse, complex, non-numeric objects: the messages scikit-learn expects
    refuse_no_features(X, name)
    arr = validate_array(X, name=name, min_ndim=1)
    arr = arr[:, None] if arr.ndim == 1 else arr
    if arr.ndim != 2:
        raise DataError(f"{name} must be (T, C) or (T,), got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


class SeriesDetector(BaseEstimator):
    """Window a series, score windows with an :class:`AnomalyDetector`, map scores to time steps.

    Parameters
    ----------
    detector: the window detector template (default ``AnomalyDetector()``), cloned in ``fit``.
    window: steps per window (1 = score single rows).
    stride: step between training windows (scoring always uses every window).

    Learned: ``detector_`` (fitted on flattened windows), ``n_channels_``. Scores are higher =
    more anomalous; ``predict_steps`` gives 1 = anomaly.
    """

    def __init__(self, detector: AnomalyDetector | None = None, window: int = 10, stride: int = 1) -> None:
        self.detector = detector
        self.window = window
        self.stride = stride

    def fit(self, series: Any | Sequence[Any], y: Any = None) -> "SeriesDetector":
        """Fit on one healthy ``(T, C)`` series or a list of them (windows never cross series)."""
        parts = [_series(s) for s in series] if isinstance(series, (list, tuple)) else [_series(series)]
        if len({p.shape[1] for p in parts}) != 1:
            raise DataError(f"all series must have the same channels, got {[p.shape[1] for p in parts]}")
        wins = [sliding_windows(p, self.window, self.stride) for p in parts]
        self.n_channels_ = self.n_features_in_ = parts[0].shape[1]
        flat = np.concatenate([w.reshape(len(w), -1) for w in wins])
        base = self.detector if self.detector is not None else AnomalyDetector()
        self.detector_ = clone(base).fit(flat)
        return self

    def _windows(self, series: Any) -> np.ndarray:
        check_is_fitted(self, "detector_")
        x = _series(series)
        if x.shape[1] != self.n_channels_:
            raise DataError(f"series has {x.shape[1]} channels, the detector was fitted on {self.n_channels_}")
        n_windows(len(x), self.window)
        w = sliding_windows(x, self.window)
        return w.reshape(len(w), -1)

    def _per_step(self, values: np.ndarray) -> np.ndarray:
        """Window values (N, ...) → step values (T, ...): step t gets the window ending at t."""
        head = np.repeat(values[:1], self.window - 1, axis=0)
        return np.concatenate([head, values])

    def score_steps(self, series: Any) -> np.ndarray:
        """(T,) anomaly score of each step (higher = more anomalous)."""
        return self._per_step(self.detector_.score_samples(self._windows(series)))

    def predict_steps(self, series: Any) -> np.ndarray:
        """(T,) 1 = anomaly, 0 = normal, by the window detector's threshold."""
        return self._per_step(self.detector_.predict(self._windows(series)))

    def channel_contributions(self, series: Any) -> np.ndarray:
        """(T, C) share of each step's score owed to each channel (summed over the window's lags)."""
        c = self.detector_.feature_contributions(self._windows(series))
        return self._per_step(c.reshape(len(c), self.window, self.n_channels_).sum(1))

    def stream(self) -> "StreamScorer":
        """A scorer fed one step at a time (memory: the last ``window`` steps)."""
        check_is_fitted(self, "detector_")
        return StreamScorer(self)


class StreamScorer:
    """Online scoring: ``update(row)`` returns the step's score (None until a window is full)."""

    def __init__(self, fitted: SeriesDetector) -> None:
        self.fitted = fitted
        self.buffer: deque[np.ndarray] = deque(maxlen=fitted.window)  # bounded memory

    def update(self, row: Any) -> float | None:
        x = validate_array(row, name="row").astype(np.float32).reshape(-1)
        if x.size != self.fitted.n_channels_:
            raise DataError(f"row has {x.size} values, the detector expects {self.fitted.n_channels_} channels")
        self.buffer.append(x)
        if len(self.buffer) < self.fitted.window:
            return None
        flat = np.concatenate(list(self.buffer))[None]
        return float(self.fitted.detector_.score_samples(flat)[0])
