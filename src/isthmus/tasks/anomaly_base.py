"""What every isthmus anomaly detector shares: input checks, thresholds, predictions, top features.

Sign convention (PyOD's, not IsolationForest's), the same for every detector: ``score_samples`` is
**higher = more anomalous**; ``decision_function = score_samples - threshold_`` is positive for
anomalies; ``predict`` returns **1 for an anomaly and 0 for normal**.

A detector's threshold is learned from its training scores (``threshold=`` rule at fit) and can be
moved afterwards without refitting with :meth:`DetectorMixin.set_threshold`, e.g. after looking at
how many alarms a week of data raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse, stats
from sklearn.utils.validation import check_is_fitted

from isthmus.data.validation import DataError, validate_array

__all__ = [
    "DetectorMixin",
    "DataTypeError",
    "THRESHOLDS",
    "pot_threshold",
    "check_table",
    "column_names",
    "refuse_unsupported",
    "refuse_no_features",
]

THRESHOLDS = ("percentile", "contamination", "pot")


class DataTypeError(DataError, TypeError):
    """A value that is not a number (a dict, a list) where a table of numbers is expected."""


def pot_threshold(train_scores: np.ndarray, risk: float = 1e-3, level: float = 0.98) -> float:
    """Peaks-over-threshold (Siffer et al., KDD 2017): fit a generalised Pareto distribution to
    the training scores above their ``level`` quantile and return the score exceeded with
    probability ``risk``. Extrapolates past the largest training score when ``risk`` is smaller
    than 1/n, which a plain percentile cannot do."""
    s = np.sort(np.asarray(train_scores, dtype=np.float64))
    if not 0 < risk < 1 - level:
        raise ValueError(f"pot risk must be in (0, 1 - level={1 - level:g}), got {risk}")
    t = float(np.quantile(s, level))
    excess = s[s > t] - t
    if len(excess) < 10:  # too few peaks to fit a tail: fall back to the empirical quantile
        return float(np.quantile(s, 1 - risk))
    shape, _, scale = stats.genpareto.fit(excess, floc=0.0)
    ratio = risk * len(s) / len(excess)
    if abs(shape) < 1e-8:
        return t - scale * np.log(ratio)
    return float(t + scale / shape * (ratio ** (-shape) - 1.0))


def column_names(X: Any) -> list[str] | None:
    """Column names of a DataFrame (all strings), else None."""
    cols = getattr(X, "columns", None)
    if cols is None or not hasattr(X, "iloc"):
        return None
    names = list(cols)
    return [str(c) for c in names] if all(isinstance(c, str) for c in names) else None


def refuse_unsupported(X: Any) -> None:
    """The messages scikit-learn's estimator checks expect (sparse, complex, non-numeric objects)."""
    if sparse.issparse(X):
        raise DataError(
            "X is a sparse matrix; sparse input is not supported by isthmus detectors: "
            "pass a dense array (X.toarray()) if it fits in memory"
        )
    dtype = getattr(X, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind == "c":
        raise DataError(
            "Complex data not supported: pass the real and imaginary parts as separate features (np.real / np.imag)"
        )
    if isinstance(X, np.ndarray) and X.dtype.kind == "O":
        for i, v in enumerate(X.reshape(-1)):
            if not isinstance(v, (int, float, np.number, bool, np.bool_, str)):
                where = np.unravel_index(i, X.shape)
                raise DataTypeError(
                    f"X: value {v!r} at index {tuple(int(j) for j in where)} is not a number; "
                    "every argument must be a string or a number (convert or drop it)"
                )


def refuse_no_features(X: Any, name: str = "X") -> None:
    """A (n, 0) table, with the message scikit-learn's estimator checks expect."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] == 0:
        raise DataError(f"{name} has 0 feature(s) (shape=({shape[0]}, 0)) while a minimum of 1 is required.")


def check_table(
    X: Any, n_features: int | None = None, fitted_names: list[str] | None = None, owner: str = "the detector"
) -> tuple[np.ndarray, list[str] | None]:
    """``X`` as a finite float64 (n_samples, n_features) array, plus its column names if a DataFrame.

    With ``n_features`` (scoring) the width and, for DataFrames, the column names must match fit.
    """
    names = column_names(X)
    if n_features is not None and names is not None and fitted_names is not None and names != fitted_names:
        missing, extra = sorted(set(fitted_names) - set(names)), sorted(set(names) - set(fitted_names))
        detail = f"missing {missing}, unexpected {extra}" if missing or extra else "same names, different order"
        raise DataError(
            f"X has different columns than at fit ({detail}); pass the columns {fitted_names} in that order"
        )
    refuse_unsupported(X)
    refuse_no_features(X)
    arr = validate_array(X, name="X", feature_names=names or fitted_names, min_ndim=1)
    if arr.ndim == 1:
        raise DataError(
            f"X must be 2-D (n_samples, n_features), got shape {arr.shape}. Reshape your data "
            "with X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample"
        )
    if arr.ndim != 2:
        raise DataError(
            f"X must be 2-D (n_samples, n_features), got shape {arr.shape}; "
            "window a time series first (isthmus.data.sliding_windows) and flatten it"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(
            f"X has {arr.shape[1]} features, but {owner} is expecting "
            f"{n_features} features as input (the columns it was fitted on)"
        )
    return arr.astype(np.float64, copy=False), names


class DetectorMixin:
    """Thresholds, ``decision_function``/``predict``/``fit_predict`` and feature names for detectors
    that set ``train_scores_``, ``threshold_``, ``n_features_in_`` in ``fit`` and define
    ``score_samples``. The host's constructor has ``threshold``, ``percentile``,
    ``contamination``, ``pot_risk`` and ``pot_level`` (see :class:`AnomalyDetector`)."""

    # What the host provides, declared for the type checker only (annotations and TYPE_CHECKING stubs
    # define nothing at runtime, so the mixin, first in the MRO, shadows none of the host's members).
    threshold: str
    percentile: float
    contamination: float
    pot_risk: float
    pot_level: float
    train_scores_: np.ndarray
    if TYPE_CHECKING:

        def fit(self, X: Any, y: Any = None) -> Any: ...
        def score_samples(self, X: Any) -> np.ndarray: ...
        def feature_contributions(self, X: Any, normalize: bool = True) -> np.ndarray: ...

    def _check_threshold_params(self) -> None:
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {THRESHOLDS}, got {self.threshold!r}")
        if not 0 < self.percentile < 100:
            raise ValueError(f"percentile must be in (0, 100), got {self.percentile}")
        if not 0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")

    def _fit_threshold(self, scores: np.ndarray) -> float:
        if self.threshold == "percentile":
            return float(np.percentile(scores, self.percentile))
        if self.threshold == "contamination":
            return float(np.quantile(scores, 1.0 - self.contamination))
        return pot_threshold(scores, risk=self.pot_risk, level=self.pot_level)

    def _check_table(self, X: Any, fitting: bool) -> np.ndarray:
        """Validate ``X``; at fit also record ``n_features_in_`` and ``feature_names_in_``."""
        if fitting:
            arr, names = check_table(X)
            self.n_features_in_ = arr.shape[1]
            if names is not None:
                self.feature_names_in_ = np.asarray(names, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return arr
        check_is_fitted(self, "threshold_")
        return check_table(X, self.n_features_in_, self._names(), type(self).__name__)[0]

    def _names(self) -> list[str] | None:
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else [str(n) for n in names]

    def set_threshold(
        self, value: float | None = None, *, percentile: float | None = None, contamination: float | None = None
    ) -> "DetectorMixin":
        """Move the alarm threshold of a fitted detector without refitting; returns ``self``.

        Give exactly one of: ``value`` (a score), ``percentile`` in (0, 100) of the training scores,
        or ``contamination`` in (0, 0.5), the fraction of training rows to flag. The constructor's
        threshold parameters are left as they are (they describe how ``fit`` sets it);
        ``threshold_`` changes and :meth:`save` keeps the new value.
        """
        check_is_fitted(self, "threshold_")
        given = [
            k
            for k, v in (("value", value), ("percentile", percentile), ("contamination", contamination))
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"set_threshold needs exactly one of value, percentile, contamination; got {given or 'none'}"
            )
        if value is not None:
            if not np.isfinite(value):
                raise ValueError(f"threshold value must be finite, got {value}")
            self.threshold_ = float(value)
        elif percentile is not None:
            if not 0 < percentile < 100:
                raise ValueError(f"percentile must be in (0, 100), got {percentile}")
            self.threshold_ = float(np.percentile(self.train_scores_, percentile))
        else:
            assert contamination is not None  # exactly one was given
            if not 0 < contamination < 0.5:
                raise ValueError(f"contamination must be in (0, 0.5), got {contamination}")
            self.threshold_ = float(np.quantile(self.train_scores_, 1.0 - contamination))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - threshold_``: positive = anomaly, negative = normal."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Any) -> np.ndarray:
        """1 for an anomaly (score above ``threshold_``), 0 for normal."""
        return (self.decision_function(X) > 0).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).predict(X)

    def top_features(self, X: Any, k: int = 3) -> list[list[str]]:
        """Names (or indices as strings) of the ``k`` largest contributors of each row."""
        c = self.feature_contributions(X)
        names = self._names() or [str(i) for i in range(self.n_features_in_)]
        return [[names[j] for j in np.argsort(-row, kind="stable")[:k]] for row in c]

    def save(self, path: Any) -> Any:
        """Write the fitted detector to folder ``path`` as JSON + safetensors (no pickle)."""
        from isthmus.tasks.anomaly_io import save_detector

        return save_detector(self, path)

    @classmethod
    def load(cls, path: Any) -> Any:
        """Read a folder written by :meth:`save`; it scores exactly like the saved detector."""
        from isthmus.tasks.anomaly_io import load_detector

        det = load_detector(path)
        if not isinstance(det, cls):
            raise TypeError(
                f"{path} holds a {type(det).__name__}, not a {cls.__name__}; "
                "use isthmus.tasks.anomaly_io.load_detector to load any detector"
            )
        return det
