"""Anomaly detection by autoencoder reconstruction error, as a scikit-learn-style estimator.

:class:`AnomalyDetector` fits a scaler and a small ensemble of autoencoders on normal (or mostly
normal) rows, scores a row by its reconstruction error in the scaled space, and flags rows whose
score exceeds a threshold learned from the training scores. The score decomposes exactly into
per-feature contributions, so every alarm says *which metrics* are at fault.

Sign convention (PyOD's, not IsolationForest's): ``score_samples`` is **higher = more
anomalous**; ``decision_function = score_samples - threshold_`` is positive for anomalies;
``predict`` returns **1 for an anomaly and 0 for normal**.

Why the default is an ensemble of small, differently-sized autoencoders: a single network's
error ranking depends on its seed and bottleneck size, and a wide net trained long on
contaminated data learns to reconstruct the outliers too. Averaging members whose bottlenecks
span a range of sizes, each normalised by its own median training error so no member
dominates, removes most of that variance without choosing a size per dataset.

Why a distance term (``distance_weight``): reconstruction error only sees rows that leave the
learned manifold (broken correlations). A row far out *along* the manifold, an extreme but
consistent operating point, reconstructs well and scores low. The squared distance of each
scaled feature from its training mean catches those; normalised by its training median and
given equal weight to the reconstruction term, it stays decomposable per feature. On 5 ODDS sets
(seed 0) it raised the mean AUROC from 0.787 to 0.815 (cardio 0.69 -> 0.87); set it to 0 for pure
reconstruction error (the HPC paper's detector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from isthmus.data.validation import DataError, validate_array

__all__ = ["AnomalyDetector", "THRESHOLDS", "pot_threshold", "default_members"]

THRESHOLDS = ("percentile", "contamination", "pot")
# Bottleneck sizes as fractions of the feature count, cycled over the ensemble members.
LATENT_FRACTIONS = (0.25, 0.5, 0.375, 0.125, 0.625)


def default_members(n_features: int, n_estimators: int) -> list[dict[str, Any]]:
    """Architectures of the default ensemble: one hidden layer of width ``clip(2d, 16, 128)``,
    latent sizes ``LATENT_FRACTIONS * d`` (at least 1, below d) cycled over the members."""
    hidden = int(np.clip(2 * n_features, 16, 128))
    out = []
    for i in range(n_estimators):
        latent = int(round(LATENT_FRACTIONS[i % len(LATENT_FRACTIONS)] * n_features))
        out.append({"hidden": [hidden], "latent_dim": int(np.clip(latent, 1, max(1, n_features - 1)))})
    return out


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


class AnomalyDetector(BaseEstimator):
    """Scale → ensemble of autoencoders → reconstruction-error score → threshold.

    Parameters
    ----------
    model: ``None`` for the default ensemble (:func:`default_members`); a dict of
        :meth:`AutoEncoder.mlp` keyword arguments (e.g. ``{"hidden": [64], "latent_dim": 4,
        "bottleneck": "gaussian"}`` for a VAE) used for every member; or a callable
        ``f(n_features) -> AutoEncoder`` (any isthmus autoencoder taking ``(N, d)`` rows).
    n_estimators: ensemble members (different seeds, and latent sizes for the default model).
    epochs: training epochs per member; ``None`` gives about ``max_steps`` optimiser steps
        (between 5 and 200 epochs), so small and large tables get similar training.
    max_steps: the step budget behind ``epochs=None``.
    batch_size, lr, weight_decay: member training (Adam, mean-squared error).
    scaler: a :func:`isthmus.data.make_scaler` name (``"standard"``, ``"minmax"``, ``"none"``),
        fitted on the training rows only (constant columns get scale 1, so they stay finite).
    threshold: ``"percentile"`` (the ``percentile`` of training scores, the HPC paper's rule),
        ``"contamination"`` (the fraction of training rows assumed anomalous, scikit-learn's
        meaning) or ``"pot"`` (extreme-value fit of the training-score tail, :func:`pot_threshold`).
    percentile, contamination, pot_risk, pot_level: the parameters of those rules.
    distance_weight: weight of the per-feature distance-from-training-mean term (see the module
        docstring); 0 scores by reconstruction error alone.
    random_state: seed for network init and batch order (resolved in ``fit``).

    Learned attributes: ``scaler_``, ``models_``, ``member_scale_`` (median training error per
    member), ``center_`` and ``distance_scale_`` (the distance term), ``train_scores_``,
    ``threshold_``, ``n_features_in_``, ``feature_names_in_`` (only for DataFrames),
    ``constant_features_`` (indices of constant training columns), ``history_`` (per member).
    """

    def __init__(
        self,
        model: dict | Callable[[int], torch.nn.Module] | None = None,
        n_estimators: int = 5,
        epochs: int | None = None,
        max_steps: int = 1500,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        scaler: str = "standard",
        threshold: str = "percentile",
        percentile: float = 99.0,
        contamination: float = 0.01,
        pot_risk: float = 1e-3,
        pot_level: float = 0.98,
        distance_weight: float = 1.0,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.model = model
        self.n_estimators = n_estimators
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.scaler = scaler
        self.threshold = threshold
        self.percentile = percentile
        self.contamination = contamination
        self.pot_risk = pot_risk
        self.pot_level = pot_level
        self.distance_weight = distance_weight
        self.random_state = random_state

    # ---- input checks ------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {THRESHOLDS}, got {self.threshold!r}")
        if not 0 < self.percentile < 100:
            raise ValueError(f"percentile must be in (0, 100), got {self.percentile}")
        if not 0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")
        if self.distance_weight < 0:
            raise ValueError(f"distance_weight must be >= 0, got {self.distance_weight}")
        if self.n_estimators < 1:
            raise ValueError(f"n_estimators must be >= 1, got {self.n_estimators}")
        if not (self.model is None or isinstance(self.model, dict) or callable(self.model)):
            raise ValueError("model must be None, a dict of AutoEncoder.mlp arguments or a callable f(n_features)")

    def _validate(self, X: Any, fitting: bool) -> np.ndarray:
        names = _column_names(X)
        if fitting:
            arr = validate_array(X, name="X", feature_names=names, min_ndim=1)
        else:
            self._check_columns(X, names)
            arr = validate_array(X, name="X", feature_names=names or self._names(), min_ndim=1)
        if arr.ndim == 1:
            raise DataError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}. Reshape your data "
                            "with X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample")
        if arr.ndim != 2:
            raise DataError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}; "
                            "window a time series first (isthmus.data.sliding_windows) and flatten it")
        if fitting:
            if names is not None:
                self.feature_names_in_ = np.asarray(names, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif arr.shape[1] != self.n_features_in_:
            raise DataError(f"X has {arr.shape[1]} features, but AnomalyDetector is expecting "
                            f"{self.n_features_in_} features as input (the columns it was fitted on)")
        return arr.astype(np.float32, copy=False)

    def _names(self) -> list[str] | None:
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else [str(n) for n in names]

    def _check_columns(self, X: Any, names: list[str] | None) -> None:
        fitted = self._names()
        if names is None or fitted is None or names == fitted:
            return
        missing, extra = sorted(set(fitted) - set(names)), sorted(set(names) - set(fitted))
        detail = f"missing {missing}, unexpected {extra}" if missing or extra else "same names, different order"
        raise DataError(f"X has different columns than at fit ({detail}); pass the columns {fitted} in that order")

    # ---- fitting -----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "AnomalyDetector":
        """Fit the scaler and the autoencoders on ``X`` (n_samples, n_features); ``y`` is ignored."""
        self._check_params()
        X = self._validate(X, fitting=True)
        if len(X) < 2:
            raise DataError(f"X has n_samples={len(X)}; AnomalyDetector needs at least 2 rows to fit")
        self.n_features_in_ = X.shape[1]
        rs = check_random_state(self.random_state)
        from isthmus.data.scalers import make_scaler

        self.scaler_ = make_scaler(self.scaler).fit(X)
        self.constant_features_ = np.flatnonzero(X.max(0) == X.min(0))
        Z = np.ascontiguousarray(self.scaler_.transform(X), dtype=np.float32)
        self.center_ = Z.astype(np.float64).mean(0)
        self.distance_scale_ = float(max(np.median(((Z - self.center_) ** 2).sum(1)), 1e-12))
        self.models_, self.history_, self.member_scale_ = [], [], []
        for spec in self._member_specs():
            seed = int(rs.randint(0, 2**31 - 1))
            model, hist = self._fit_member(spec, Z, seed)
            err = _squared_error(model, Z).sum(1)
            # Median, not mean: outliers in the training rows would inflate a mean.
            self.member_scale_.append(float(max(np.median(err), 1e-12)))
            self.models_.append(model)
            self.history_.append(hist)
        self.train_scores_ = self._contributions_raw(Z).sum(1)
        self.threshold_ = self._fit_threshold(self.train_scores_)
        return self

    def _member_specs(self) -> list[Any]:
        if self.model is None:
            return default_members(self.n_features_in_, self.n_estimators)
        return [self.model] * self.n_estimators

    def _fit_member(self, spec: Any, Z: np.ndarray, seed: int) -> tuple[torch.nn.Module, list]:
        from isthmus.models import AutoEncoder, ObjectiveConfig
        from isthmus.train import Trainer, TrainerConfig

        torch.manual_seed(seed)  # network init belongs to the estimator's randomness
        d = Z.shape[1]
        if callable(spec):
            model = spec(d)
        else:
            kwargs = {"objective": ObjectiveConfig(recon_loss="mse", recon_reduction="mean"), **spec}
            model = AutoEncoder.mlp(in_dim=d, **kwargs)
        batch = min(self.batch_size, len(Z))
        epochs = self.epochs or int(np.clip(round(self.max_steps * batch / len(Z)), 5, 200))
        cfg = TrainerConfig(epochs=epochs, batch_size=batch, lr=self.lr, weight_decay=self.weight_decay,
                            seed=seed, progress=False)
        result = Trainer(model, cfg).fit(torch.from_numpy(Z))
        # Score on CPU in float64: float32 matmuls give batch-size-dependent round-off (~1e-7), so
        # a row's score would depend on which rows it was scored with.
        model.cpu().double().eval()
        return model, list(getattr(result, "history", []) or [])

    def _fit_threshold(self, scores: np.ndarray) -> float:
        if self.threshold == "percentile":
            return float(np.percentile(scores, self.percentile))
        if self.threshold == "contamination":
            return float(np.quantile(scores, 1.0 - self.contamination))
        return pot_threshold(scores, risk=self.pot_risk, level=self.pot_level)

    # ---- scoring -----------------------------------------------------------------------------
    def _contributions_raw(self, Z: np.ndarray) -> np.ndarray:
        """(N, D) per-feature error averaged over members (each divided by its median training
        error) plus ``distance_weight`` times the normalised squared distance from the training mean."""
        total = np.zeros(Z.shape, dtype=np.float64)
        for model, scale in zip(self.models_, self.member_scale_):
            total += _squared_error(model, Z) / scale
        total /= len(self.models_)
        if self.distance_weight > 0:
            total += self.distance_weight * (Z - self.center_) ** 2 / self.distance_scale_
        return total

    def _scaled(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "threshold_")
        X = self._validate(X, fitting=False)
        return np.ascontiguousarray(self.scaler_.transform(X), dtype=np.float32)

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly score of each row, **higher = more anomalous**: normalised squared reconstruction
        error plus the weighted distance term (about ``1 + distance_weight`` for a typical training row)."""
        return self._contributions_raw(self._scaled(X)).sum(1)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - threshold_``: positive = anomaly, negative = normal."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Any) -> np.ndarray:
        """1 for an anomaly (score above ``threshold_``), 0 for normal."""
        return (self.decision_function(X) > 0).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).predict(X)

    def feature_contributions(self, X: Any, normalize: bool = True) -> np.ndarray:
        """(n_samples, n_features) share of each row's score owed to each feature.

        With ``normalize`` each row sums to 1 (which metrics are at fault); without, rows sum to
        :meth:`score_samples` (how much each metric is off, comparable across rows).
        """
        c = self._contributions_raw(self._scaled(X))
        if not normalize:
            return c
        return c / np.maximum(c.sum(1, keepdims=True), 1e-300)

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to folder ``path`` as JSON + safetensors (no pickle)."""
        from isthmus.tasks.anomaly_io import save_detector

        return save_detector(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "AnomalyDetector":
        """Read a folder written by :meth:`save`; it scores exactly like the saved detector."""
        from isthmus.tasks.anomaly_io import load_detector

        return load_detector(path)

    def top_features(self, X: Any, k: int = 3) -> list[list[str]]:
        """Names (or indices as strings) of the ``k`` largest contributors of each row."""
        c = self.feature_contributions(X)
        names = self._names() or [str(i) for i in range(self.n_features_in_)]
        return [[names[j] for j in np.argsort(-row, kind="stable")[:k]] for row in c]


def _squared_error(model: torch.nn.Module, Z: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(N, D) squared reconstruction error of scaled rows ``Z`` (eval mode: no corruption/sampling)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(Z), chunk):
            xs = torch.from_numpy(np.asarray(Z[i : i + chunk], dtype=np.float64))
            recon = model.reconstruct(xs).reshape(xs.shape)
            out.append(((recon - xs) ** 2).numpy())
    return np.concatenate(out)


def _column_names(X: Any) -> list[str] | None:
    """Column names of a DataFrame (all strings), else None."""
    cols = getattr(X, "columns", None)
    if cols is None or not hasattr(X, "iloc"):
        return None
    names = list(cols)
    return [str(c) for c in names] if all(isinstance(c, str) for c in names) else None
