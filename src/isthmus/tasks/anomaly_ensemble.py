"""Combine anomaly detectors: normalise each one's score by its training scores, then average.

Raw scores live on unrelated scales (a squared error, a distance, a path-length ratio), so a plain
mean lets one detector dominate. Each member's score is mapped to a robust z-score against its own
training scores, ``(s - median) / (1.4826 * MAD)`` (PyOD's "standardise then average", made robust
because the training rows are contaminated), and the z-scores are averaged. The combination is
itself a detector: same sign convention, thresholds, save/load; its ``feature_contributions`` is
the mean of the members' normalised contributions, over the members that define them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, clone

from isthmus.data.validation import DataError
from isthmus.tasks.anomaly_base import DetectorMixin

__all__ = ["ScoreAverage"]


class ScoreAverage(DetectorMixin, BaseEstimator):
    """Mean of robust-z-normalised member scores.

    Parameters
    ----------
    detectors: unfitted isthmus detectors (cloned at fit); ``None`` gives IsolationForest + kNN +
        ECOD, three detectors whose failure modes differ (global isolation, local density, per-feature tails).
    threshold, percentile, contamination, pot_risk, pot_level: as :class:`AnomalyDetector`.
    random_state: passed to members that take one (when they leave theirs unset).
    """

    def __init__(
        self,
        detectors: Sequence[Any] | None = None,
        threshold: str = "percentile",
        percentile: float = 99.0,
        contamination: float = 0.01,
        pot_risk: float = 1e-3,
        pot_level: float = 0.98,
        random_state: int | None = None,
    ) -> None:
        self.detectors = detectors
        self.threshold, self.percentile, self.contamination = threshold, percentile, contamination
        self.pot_risk, self.pot_level, self.random_state = pot_risk, pot_level, random_state

    def _members(self) -> list[Any]:
        if self.detectors is None:
            from isthmus.tasks.anomaly_classic import ECODDetector, IsolationForestDetector, KNNDetector

            return [IsolationForestDetector(), KNNDetector(), ECODDetector()]
        if len(self.detectors) == 0:
            raise ValueError("detectors is empty; pass at least one detector (or None for the default trio)")
        return [clone(d) for d in self.detectors]

    def fit(self, X: Any, y: Any = None) -> "ScoreAverage":
        """Fit every member on ``X``; ``y`` is ignored."""
        self._check_threshold_params()
        X = self._check_table(X, fitting=True)
        if len(X) < 2:
            raise DataError(f"X has n_samples={len(X)}; ScoreAverage needs at least 2 rows to fit")
        names = self._names()
        data = X if names is None else _frame(X, names)
        self.detectors_ = []
        centers, scales = [], []
        for det in self._members():
            if "random_state" in det.get_params() and det.get_params()["random_state"] is None:
                det.set_params(random_state=self.random_state)
            det.fit(data)
            s = det.train_scores_
            med = float(np.median(s))
            mad = 1.4826 * float(np.median(np.abs(s - med)))
            centers.append(med)
            scales.append(max(mad, float(np.std(s)), 1e-12))  # MAD is 0 when most scores tie
            self.detectors_.append(det)
        self.center_, self.scale_ = np.asarray(centers), np.asarray(scales)
        self.train_scores_ = self._combine([d.train_scores_ for d in self.detectors_])
        self.threshold_ = self._fit_threshold(self.train_scores_)
        return self

    def _combine(self, scores: list[np.ndarray]) -> np.ndarray:
        return np.mean([(s - c) / k for s, c, k in zip(scores, self.center_, self.scale_)], axis=0)

    def _data(self, X: Any) -> Any:
        arr = self._check_table(X, fitting=False)
        names = self._names()
        return arr if names is None else _frame(arr, names)

    def score_samples(self, X: Any) -> np.ndarray:
        """Mean robust z-score of the members, **higher = more anomalous**."""
        data = self._data(X)
        return self._combine([d.score_samples(data) for d in self.detectors_])

    def feature_contributions(self, X: Any, normalize: bool = True) -> np.ndarray:
        """Mean of the members' row-normalised contributions (members without them are skipped);
        rows sum to 1. ``normalize=False`` is refused: a z-score does not split over features."""
        if not normalize:
            raise ValueError(
                "ScoreAverage contributions exist only normalised (rows sum to 1): a z-scored, "
                "averaged score has no exact per-feature split"
            )
        data = self._data(X)
        parts = [d.feature_contributions(data) for d in self.detectors_ if hasattr(d, "feature_contributions")]
        if not parts:
            raise AttributeError("no member of this ScoreAverage defines feature_contributions")
        return np.mean(parts, axis=0)


def _frame(arr: np.ndarray, names: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(arr, columns=names)
