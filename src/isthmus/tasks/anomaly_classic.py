"""Classical anomaly detectors in the same API as :class:`~isthmus.tasks.anomaly.AnomalyDetector`.

So a user compares (and combines) detectors inside one API: same sign convention (higher score =
more anomalous, ``predict`` 1 = anomaly), the same threshold rules and :meth:`set_threshold`,
save/load as JSON + safetensors (never pickle) and, where a score decomposes over features,
``feature_contributions`` whose raw rows sum to the score.

- :class:`IsolationForestDetector`: fitted by scikit-learn's ``IsolationForest``; the trees' arrays
  are kept and scored here in numpy (the same path-length formula, checked equal to scikit-learn's
  in the tests), because a scikit-learn forest cannot be written without pickle. Saving the arrays
  is saving the model: a loaded forest scores bit-for-bit like the fitted one.
- :class:`KNNDetector`: distance to the k-th nearest training row (scikit-learn ``NearestNeighbors``).
- :class:`LOFDetector`: local outlier factor from the same neighbour queries (checked equal to
  scikit-learn's ``LocalOutlierFactor(novelty=True)``; its training densities are private there).
- :class:`ECODDetector`: ECOD (Li et al., TKDE 2022), per-feature empirical-CDF tail probabilities.
- :class:`PCADetector`: squared reconstruction error from the principal components that explain
  ``variance`` of the training variance (scikit-learn ``PCA``).

Training scores (for thresholds) of kNN and LOF leave each row out of its own neighbours, so the
threshold is not biased low by every training row being its own nearest neighbour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

from isthmus.data.validation import DataError
from isthmus.tasks.anomaly_base import DetectorMixin

__all__ = ["IsolationForestDetector", "KNNDetector", "LOFDetector", "ECODDetector", "PCADetector", "CLASSIC_DETECTORS"]


class _Classic(DetectorMixin, BaseEstimator):
    """fit = validate → optional scaler → ``_fit_core`` → training scores → threshold.

    Subclasses define ``_fit_core(Z)`` (sets learned arrays), ``_score(Z)`` and ``_train_scores(Z)``,
    and ``_state()``/``_set_state()`` (the arrays and scalars written by :meth:`save`)."""

    _uses_scaler = True

    def fit(self, X: Any, y: Any = None) -> "_Classic":
        """Fit on ``X`` (n_samples, n_features) of normal or mostly normal rows; ``y`` is ignored."""
        self._check_params()
        self._check_threshold_params()
        X = self._check_table(X, fitting=True)
        if len(X) < 2:
            raise DataError(f"X has n_samples={len(X)}; {type(self).__name__} needs at least 2 rows to fit")
        from isthmus.data.scalers import make_scaler

        self.scaler_ = make_scaler(self.scaler if self._uses_scaler else "none").fit(X)
        Z = np.asarray(self.scaler_.transform(X), dtype=np.float64)
        self._fit_core(Z)
        self.train_scores_ = self._train_scores(Z)
        self.threshold_ = self._fit_threshold(self.train_scores_)
        return self

    def _check_params(self) -> None:
        pass

    def _train_scores(self, Z: np.ndarray) -> np.ndarray:
        return self._score(Z)

    def _z(self, X: Any) -> np.ndarray:
        X = self._check_table(X, fitting=False)  # checks fitted before touching scaler_
        return np.asarray(self.scaler_.transform(X), dtype=np.float64)

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly score of each row, **higher = more anomalous**."""
        return self._score(self._z(X))


def _threshold_init(
    self: Any, threshold: str, percentile: float, contamination: float, pot_risk: float, pot_level: float
) -> None:
    self.threshold, self.percentile, self.contamination = threshold, percentile, contamination
    self.pot_risk, self.pot_level = pot_risk, pot_level


def _c(n: np.ndarray | float) -> np.ndarray:
    """Average path length of an unsuccessful binary-search-tree search among n points (IForest's c(n))."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForestDetector(_Classic):
    """Isolation forest (Liu et al. 2008) via scikit-learn; score ``2^(-E[path]/c(max_samples))``
    in (0, 1], higher = more anomalous (scikit-learn's ``-score_samples``). No per-feature
    contributions: a path length does not split over features."""

    _uses_scaler = False

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        max_features: float = 1.0,
        threshold: str = "percentile",
        percentile: float = 99.0,
        contamination: float = 0.01,
        pot_risk: float = 1e-3,
        pot_level: float = 0.98,
        random_state: int | None = None,
    ) -> None:
        self.n_estimators, self.max_samples, self.max_features = n_estimators, max_samples, max_features
        _threshold_init(self, threshold, percentile, contamination, pot_risk, pot_level)
        self.random_state = random_state

    def _fit_core(self, Z: np.ndarray) -> None:
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            random_state=self.random_state,
        ).fit(Z)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("left", "right", "feature", "split", "depth", "leaf")}
        offsets, used = [0], []
        for tree, feats in zip(forest.estimators_, forest.estimators_features_):
            t = tree.tree_
            depth = np.zeros(t.node_count, dtype=np.float64)
            for i in range(t.node_count):  # nodes are numbered parents-first
                for child in (t.children_left[i], t.children_right[i]):
                    if child >= 0:
                        depth[child] = depth[i] + 1
            feature = np.where(t.feature >= 0, np.asarray(feats)[np.maximum(t.feature, 0)], -1)
            parts["left"].append(t.children_left.astype(np.int64))
            parts["right"].append(t.children_right.astype(np.int64))
            parts["feature"].append(feature.astype(np.int64))
            parts["split"].append(t.threshold.astype(np.float64))
            parts["depth"].append(depth)
            parts["leaf"].append(depth + _c(t.n_node_samples))  # path length credited at each leaf
            offsets.append(offsets[-1] + t.node_count)
            used.append(feats)
        self.trees_ = {k: np.concatenate(v) for k, v in parts.items()}
        self.tree_offsets_ = np.asarray(offsets, dtype=np.int64)
        self.max_samples_ = int(forest.max_samples_)

    def _score(self, Z: np.ndarray) -> np.ndarray:
        t, off = self.trees_, self.tree_offsets_
        total = np.zeros(len(Z))
        rows = np.arange(len(Z))
        Z32 = Z.astype(np.float32)  # scikit-learn trees split on float32 features
        for k in range(len(off) - 1):
            node = np.full(len(Z), off[k])
            while True:
                inner = t["left"][node] >= 0
                if not inner.any():
                    break
                f = t["feature"][node[inner]]
                go_left = Z32[rows[inner], f] <= t["split"][node[inner]]
                nxt = np.where(go_left, t["left"][node[inner]], t["right"][node[inner]]) + off[k]
                node[inner] = nxt
            total += t["leaf"][node]
        denom = (len(off) - 1) * float(_c(self.max_samples_))
        return 2.0 ** (-(total / denom if denom > 0 else np.ones_like(total)))

    def _state(self) -> tuple[dict, dict]:
        return {"max_samples_": self.max_samples_}, {
            **{f"tree_{k}": v for k, v in self.trees_.items()},
            "tree_offsets": self.tree_offsets_,
        }

    def _set_state(self, meta: dict, arrays: dict) -> None:
        self.max_samples_ = int(meta["max_samples_"])
        self.trees_ = {k[5:]: v for k, v in arrays.items() if k.startswith("tree_") and k != "tree_offsets"}
        self.tree_offsets_ = arrays["tree_offsets"]


class _Neighbours(_Classic):
    def _check_params(self) -> None:
        if int(self.n_neighbors) < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {self.n_neighbors}")

    def _k(self, n_train: int) -> int:
        return int(min(self.n_neighbors, n_train - 1))  # leave-one-out on the training rows

    def _fit_core(self, Z: np.ndarray) -> None:
        self.fit_X_ = Z
        self._index()

    def _index(self) -> None:
        self.nn_ = NearestNeighbors(n_neighbors=self._k(len(self.fit_X_))).fit(self.fit_X_)

    def _state(self) -> tuple[dict, dict]:
        return {}, {"fit_X": self.fit_X_, **self._extra_arrays()}

    def _extra_arrays(self) -> dict:
        return {}

    def _set_state(self, meta: dict, arrays: dict) -> None:
        self.fit_X_ = arrays["fit_X"]
        for k, v in arrays.items():
            if k != "fit_X":
                setattr(self, f"{k}_", v)
        self._index()  # an exact neighbour index over the stored rows: the same answers as at fit


class KNNDetector(_Neighbours):
    """Distance to the ``n_neighbors``-th nearest training row (``method="largest"``, PyOD's default)
    or the mean distance to the ``n_neighbors`` nearest (``"mean"``), in the scaled space."""

    def __init__(
        self,
        n_neighbors: int = 5,
        method: str = "largest",
        scaler: str = "standard",
        threshold: str = "percentile",
        percentile: float = 99.0,
        contamination: float = 0.01,
        pot_risk: float = 1e-3,
        pot_level: float = 0.98,
    ) -> None:
        self.n_neighbors, self.method, self.scaler = n_neighbors, method, scaler
        _threshold_init(self, threshold, percentile, contamination, pot_risk, pot_level)

    def _check_params(self) -> None:
        super()._check_params()
        if self.method not in ("largest", "mean"):
            raise ValueError(f"method must be 'largest' or 'mean', got {self.method!r}")

    def _dist(self, Z: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.nn_.kneighbors(Z)  # Z=None: the training rows, each without itself

    def _reduce(self, dist: np.ndarray) -> np.ndarray:
        return dist[:, -1] if self.method == "largest" else dist.mean(1)

    def _score(self, Z: np.ndarray) -> np.ndarray:
        return self._reduce(self._dist(Z)[0])

    def _train_scores(self, Z: np.ndarray) -> np.ndarray:
        return self._reduce(self._dist(None)[0])

    def feature_contributions(self, X: Any, normalize: bool = True) -> np.ndarray:
        """Per-feature share of the distance(s): ``(x_j - n_j)^2 / ||x - n||`` averaged over the
        neighbours the score uses; raw rows sum to :meth:`score_samples`."""
        Z = self._z(X)
        dist, idx = self._dist(Z)
        if self.method == "largest":
            dist, idx = dist[:, -1:], idx[:, -1:]
        diff2 = (Z[:, None, :] - self.fit_X_[idx]) ** 2
        c = (diff2 / np.maximum(dist, 1e-300)[:, :, None]).mean(1)
        return c / np.maximum(c.sum(1, keepdims=True), 1e-300) if normalize else c


class LOFDetector(_Neighbours):
    """Local outlier factor (Breunig et al. 2000), novelty mode: the mean ratio of the neighbours'
    local reachability density to the row's own; about 1 inside a cluster, larger outside."""

    def __init__(
        self,
        n_neighbors: int = 20,
        scaler: str = "standard",
        threshold: str = "percentile",
        percentile: float = 99.0,
        contamination: float = 0.01,
        pot_risk: float = 1e-3,
        pot_level: float = 0.98,
    ) -> None:
        self.n_neighbors, self.scaler = n_neighbors, scaler
        _threshold_init(self, threshold, percentile, contamination, pot_risk, pot_level)

    def _fit_core(self, Z: np.ndarray) -> None:
        super()._fit_core(Z)
        dist, idx = self.nn_.kneighbors(None)
        self.k_distance_ = dist[:, -1]
        self.lrd_ = self._lrd(dist, idx)

    def _extra_arrays(self) -> dict:
        return {"k_distance": self.k_distance_, "lrd": self.lrd_}

    def _lrd(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        reach = np.maximum(dist, self.k_distance_[idx])
        return 1.0 / (reach.mean(1) + 1e-10)  # scikit-learn's guard against duplicate rows

    def _lof(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return (self.lrd_[idx] / self._lrd(dist, idx)[:, None]).mean(1)

    def _score(self, Z: np.ndarray) -> np.ndarray:
        return self._lof(*self.nn_.kneighbors(Z))

    def _train_scores(self, Z: np.ndarray) -> np.ndarray:
        return self._lof(*self.nn_.kneighbors(None))


class ECODDetector(_Classic):
    """ECOD: per feature, the negative log of the empirical left- and right-tail probabilities of the
    value under the training distribution; the score is the largest of the left-tail sum, the
    right-tail sum and the skewness-chosen-tail sum, and its terms are the per-feature contributions.
    Tail probabilities are ``(count + 1) / (n + 1)`` so values beyond the training range stay finite
    (PyOD instead refits the CDFs on train + test rows together, which a saved detector cannot do)."""

    _uses_scaler = False

    def __init__(
        self,
        threshold: str = "percentile",
        percentile: float = 99.0,
        contamination: float = 0.01,
        pot_risk: float = 1e-3,
        pot_level: float = 0.98,
    ) -> None:
        _threshold_init(self, threshold, percentile, contamination, pot_risk, pot_level)

    def _fit_core(self, Z: np.ndarray) -> None:
        self.sorted_ = np.sort(Z, axis=0)
        with np.errstate(all="ignore"):
            self.skew_ = np.nan_to_num(stats.skew(Z, axis=0), nan=0.0)

    def _terms(self, Z: np.ndarray) -> np.ndarray:
        n = len(self.sorted_)
        d = Z.shape[1]
        left, right = np.empty_like(Z), np.empty_like(Z)
        for j in range(d):
            col = self.sorted_[:, j]
            left[:, j] = -np.log((np.searchsorted(col, Z[:, j], side="right") + 1) / (n + 1))
            right[:, j] = -np.log((n - np.searchsorted(col, Z[:, j], side="left") + 1) / (n + 1))
        auto = np.where(self.skew_ < 0, left, right)
        terms = np.stack([left, right, auto])  # (3, N, d)
        pick = terms.sum(2).argmax(0)
        return terms[pick, np.arange(len(Z))]

    def _score(self, Z: np.ndarray) -> np.ndarray:
        return self._terms(Z).sum(1)

    def feature_contributions(self, X: Any, normalize: bool = True) -> np.ndarray:
        """Per-feature tail terms of the chosen sum; raw rows sum to :meth:`score_samples`."""
        c = self._terms(self._z(X))
        return c / np.maximum(c.sum(1, keepdims=True), 1e-300) if normalize else c

    def _state(self) -> tuple[dict, dict]:
        return {}, {"sorted": self.sorted_, "skew": self.skew_}

    def _set_state(self, meta: dict, arrays: dict) -> None:
        self.sorted_, self.skew_ = arrays["sorted"], arrays["skew"]


class PCADetector(_Classic):
    """Squared reconstruction error from the principal components explaining ``variance`` of the
    (scaled) training variance; per-feature contributions are the squared residuals."""

    def __init__(
        self,
        variance: float = 0.9,
        scaler: str = "standard",
        threshold: str = "percentile",
        percentile: float = 99.0,
        contamination: float = 0.01,
        pot_risk: float = 1e-3,
        pot_level: float = 0.98,
    ) -> None:
        self.variance, self.scaler = variance, scaler
        _threshold_init(self, threshold, percentile, contamination, pot_risk, pot_level)

    def _check_params(self) -> None:
        if not 0 < self.variance < 1:
            raise ValueError(f"variance must be in (0, 1), got {self.variance}")

    def _fit_core(self, Z: np.ndarray) -> None:
        pca = PCA(n_components=self.variance, svd_solver="full").fit(Z)
        self.mean_, self.components_ = pca.mean_, pca.components_

    def _residual2(self, Z: np.ndarray) -> np.ndarray:
        C = Z - self.mean_
        # einsum, not BLAS matmul: a row's result must not depend on which rows share its batch
        proj = np.einsum("nd,kd->nk", C, self.components_)
        return (C - np.einsum("nk,kd->nd", proj, self.components_)) ** 2

    def _score(self, Z: np.ndarray) -> np.ndarray:
        return self._residual2(Z).sum(1)

    def feature_contributions(self, X: Any, normalize: bool = True) -> np.ndarray:
        c = self._residual2(self._z(X))
        return c / np.maximum(c.sum(1, keepdims=True), 1e-300) if normalize else c

    def _state(self) -> tuple[dict, dict]:
        return {}, {"mean": self.mean_, "components": self.components_}

    def _set_state(self, meta: dict, arrays: dict) -> None:
        self.mean_, self.components_ = arrays["mean"], arrays["components"]


CLASSIC_DETECTORS = {
    c.__name__: c for c in (IsolationForestDetector, KNNDetector, LOFDetector, ECODDetector, PCADetector)
}
