"""Fleet anomaly detection: one detector per entity (node, machine) and one global detector.

Borghesi et al. 2019 (arXiv 1811.05269, seed paper 6) train **one autoencoder per HPC node** on
its healthy period, because nodes differ (gains, thermal lags) and a single model must either
blur those differences or spend capacity on them. :class:`FleetDetector` does that with any
:class:`~isthmus.tasks.anomaly.AnomalyDetector` as a template (cloned per entity, so each gets
its own scaler, networks and threshold) and fits the same template on all rows as the global
model to compare against. Rows are 2-D ``(n_rows, n_features)`` with an ``entities`` vector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from isthmus.data.validation import DataError
from isthmus.io import CheckpointError, atomic_write_json, read_json
from isthmus.tasks.anomaly import AnomalyDetector

__all__ = ["FleetDetector", "MODES", "save_fleet", "load_fleet"]

MODES = ("entity", "global")


class FleetDetector(BaseEstimator):
    """One detector per entity plus a global one; score with ``mode="entity"`` or ``"global"``.

    Parameters
    ----------
    detector: the template (default ``AnomalyDetector()``); cloned per entity and for the
        global model. Its ``random_state`` is overridden by seeds drawn from ``random_state``.
    fit_global: also fit the global model (needed for ``mode="global"``).
    unseen: what scoring does for an entity absent at fit: ``"error"`` or ``"global"``
        (fall back to the global model).
    random_state: resolved in ``fit``; each entity gets its own derived seed.

    Learned: ``detectors_`` (entity → fitted detector), ``global_`` (or None), ``entities_``.
    Scores follow :class:`AnomalyDetector`: higher = more anomalous; ``predict`` gives 1 = anomaly,
    each entity judged by its own threshold.
    """

    def __init__(
        self,
        detector: AnomalyDetector | None = None,
        fit_global: bool = True,
        unseen: str = "error",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.detector = detector
        self.fit_global = fit_global
        self.unseen = unseen
        self.random_state = random_state

    def _template(self, seed: int) -> AnomalyDetector:
        base = self.detector if self.detector is not None else AnomalyDetector()
        return clone(base).set_params(random_state=seed)

    def fit(self, X: Any, entities: Any) -> "FleetDetector":
        """Fit one detector on each entity's rows (and the global one on all rows)."""
        if self.unseen not in ("error", "global"):
            raise ValueError(f"unseen must be 'error' or 'global', got {self.unseen!r}")
        if self.unseen == "global" and not self.fit_global:
            raise ValueError("unseen='global' needs fit_global=True")
        ent = self._entities(X, entities)
        rs = check_random_state(self.random_state)
        self.entities_ = list(dict.fromkeys(ent.tolist()))  # first-seen order
        self.detectors_ = {}
        for e in self.entities_:
            self.detectors_[e] = self._template(int(rs.randint(0, 2**31 - 1))).fit(_rows(X, ent == e))
        self.global_ = self._template(int(rs.randint(0, 2**31 - 1))).fit(X) if self.fit_global else None
        return self

    @staticmethod
    def _entities(X: Any, entities: Any) -> np.ndarray:
        if entities is None:
            raise DataError("entities is missing: pass one entity id per row of X (or score with mode='global')")
        ent = np.asarray(entities)
        if ent.ndim != 1 or len(ent) != len(X):
            raise DataError(f"entities must be 1-D with one id per row of X ({len(X)}), got shape {ent.shape}")
        return ent

    def _apply(self, method: str, X: Any, entities: Any, mode: str) -> np.ndarray:
        check_is_fitted(self, "detectors_")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "global":
            if self.global_ is None:
                raise ValueError("no global model: fit with fit_global=True")
            return getattr(self.global_, method)(X)
        ent = self._entities(X, entities)
        unknown = sorted(set(ent.tolist()) - set(self.detectors_), key=str)
        if unknown and self.unseen == "error":
            raise DataError(
                f"entities {unknown[:5]} were not seen at fit (known: {self.entities_[:5]}...); "
                "fit them, or set unseen='global' to score them with the global model"
            )
        out: np.ndarray | None = None
        for e in dict.fromkeys(ent.tolist()):
            mask = ent == e
            vals = getattr(self.detectors_.get(e, self.global_), method)(_rows(X, mask))
            if out is None:
                out = np.zeros((len(ent),) + vals.shape[1:], dtype=vals.dtype)
            out[mask] = vals
        if out is None:  # no rows; mode="global" (the member's own check) says the same
            raise DataError(f"X: is empty (shape {np.shape(X)}); it needs at least one row")
        return out

    def score_samples(self, X: Any, entities: Any = None, mode: str = "entity") -> np.ndarray:
        """Anomaly score per row (higher = more anomalous) from its entity's model or the global one."""
        return self._apply("score_samples", X, entities, mode)

    def decision_function(self, X: Any, entities: Any = None, mode: str = "entity") -> np.ndarray:
        """Score minus the threshold of the model that scored the row (positive = anomaly)."""
        return self._apply("decision_function", X, entities, mode)

    def predict(self, X: Any, entities: Any = None, mode: str = "entity") -> np.ndarray:
        """1 = anomaly, 0 = normal."""
        return self._apply("predict", X, entities, mode)

    def feature_contributions(self, X: Any, entities: Any = None, mode: str = "entity") -> np.ndarray:
        """Per-row share of the score owed to each feature (rows sum to 1)."""
        return self._apply("feature_contributions", X, entities, mode)


def save_fleet(fleet: FleetDetector, path: str | Path) -> Path:
    """Write a fitted fleet: ``fleet.json`` + one :meth:`AnomalyDetector.save` folder per entity
    (``entity_<i>/``, in ``entities_`` order) and ``global/`` when there is a global model."""
    check_is_fitted(fleet, "detectors_")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for i, e in enumerate(fleet.entities_):
        fleet.detectors_[e].save(path / f"entity_{i}")
    if fleet.global_ is not None:
        fleet.global_.save(path / "global")
    entities = [e.item() if isinstance(e, np.generic) else e for e in fleet.entities_]
    atomic_write_json(
        path / "fleet.json",
        {
            "format": "isthmus.FleetDetector/1",
            "entities": entities,
            "fit_global": fleet.fit_global,
            "unseen": fleet.unseen,
        },
    )
    return path


def load_fleet(path: str | Path) -> FleetDetector:
    """Read a folder written by :func:`save_fleet` (the template detector is not restored)."""
    path = Path(path)
    if not (path / "fleet.json").is_file():
        raise CheckpointError(f"{path} has no fleet.json; it is not a folder written by save_fleet")
    meta = read_json(path / "fleet.json")
    fleet = FleetDetector(fit_global=meta["fit_global"], unseen=meta["unseen"])
    fleet.entities_ = list(meta["entities"])
    fleet.detectors_ = {e: AnomalyDetector.load(path / f"entity_{i}") for i, e in enumerate(fleet.entities_)}
    fleet.global_ = AnomalyDetector.load(path / "global") if (path / "global").is_dir() else None
    return fleet


def _rows(X: Any, mask: np.ndarray) -> Any:
    """Select rows of an array or DataFrame (keeping column names for the detector's checks)."""
    return X.loc[mask] if hasattr(X, "loc") else np.asarray(X)[mask]
