"""Save and load fitted isthmus anomaly detectors without pickle (JSON + safetensors).

:func:`save_detector` / :func:`load_detector` take any detector of ``isthmus.tasks``: the
autoencoder :class:`~isthmus.tasks.anomaly.AnomalyDetector`, the classical detectors of
:mod:`isthmus.tasks.anomaly_classic` (``detector.json`` + ``state.safetensors`` with their learned
arrays) and :class:`~isthmus.tasks.anomaly_ensemble.ScoreAverage` (one ``member_<i>/`` folder each).

Autoencoder detector:

Folder layout: ``detector.json`` (constructor parameters, scaler statistics, threshold and the
other learned scalars), ``state.safetensors`` (training scores, distance centre) and one
``member_<i>/`` per autoencoder written by :meth:`AutoEncoder.save_pretrained`. A ``model=``
callable is not serialisable, so it is stored as ``null``: the loaded detector scores exactly
like the saved one, but refitting it uses the default architecture unless ``model`` is set again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from isthmus.io import CheckpointError, atomic_write_json, load_state_strict, load_tensors, read_json, save_tensors

__all__ = ["save_detector", "load_detector"]

FORMAT = "isthmus.AnomalyDetector/1"
FORMAT_CLASSIC = "isthmus.{}/1"


def save_detector(det: Any, path: str | Path) -> Path:
    """Write fitted ``det`` into folder ``path`` (created); returns the folder."""
    from sklearn.utils.validation import check_is_fitted

    from isthmus.tasks.anomaly import AnomalyDetector

    check_is_fitted(det, "threshold_")
    if not isinstance(det, AnomalyDetector):
        return _save_other(det, Path(path))
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    params = det.get_params()
    if params["model"] is not None and not isinstance(params["model"], dict):
        params["model"] = None  # a callable cannot be written as JSON (see the module docstring)
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    names = getattr(det, "feature_names_in_", None)
    meta = {
        "format": FORMAT,
        "params": params,
        "scaler": det.scaler_.to_dict(),
        "threshold": det.threshold_,
        "member_scale": list(det.member_scale_),
        "latent_scale": list(det.latent_scale_),
        "distance_scale": det.distance_scale_,
        "n_features_in": det.n_features_in_,
        "feature_names_in": None if names is None else [str(n) for n in names],
        "constant_features": [int(i) for i in det.constant_features_],
        "n_members": len(det.models_),
    }
    for i, model in enumerate(det.models_):
        if not hasattr(model, "save_pretrained"):
            raise CheckpointError(
                f"member {i} ({type(model).__name__}) has no save_pretrained; only isthmus AutoEncoders can be saved"
            )
        cast(Any, model).save_pretrained(path / f"member_{i}")
    state = {"train_scores": det.train_scores_, "center": det.center_, "feature_scale": det.feature_scale_}
    for i, (mean, precision) in enumerate(zip(det.latent_mean_, det.latent_precision_)):
        state[f"latent_mean_{i}"], state[f"latent_precision_{i}"] = mean, precision
    save_tensors(
        path / "state.safetensors",
        {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in state.items()},
        metadata={"format": FORMAT},
    )
    atomic_write_json(path / "detector.json", meta)
    return path


def load_detector(path: str | Path) -> Any:
    """Read a folder written by :func:`save_detector` (any detector type)."""
    from isthmus.data.scalers import Scaler
    from isthmus.models import AutoEncoder
    from isthmus.tasks.anomaly import AnomalyDetector

    path = Path(path)
    if not (path / "detector.json").is_file():
        raise CheckpointError(f"{path} has no detector.json; it is not a folder written by AnomalyDetector.save")
    meta = read_json(path / "detector.json")
    if meta.get("format") != FORMAT and str(meta.get("format", "")).startswith("isthmus."):
        return _load_other(path, meta)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}/detector.json has format {meta.get('format')!r}, expected {FORMAT!r}")
    params = dict(meta["params"])
    if "noise" not in params:  # written before issue 22: member-normalised error, no latent term
        params.update(noise="member", latent_weight=0.0)
    det = AnomalyDetector(**params)
    det.scaler_ = Scaler.from_dict(meta["scaler"])
    det.threshold_, det.distance_scale_ = float(meta["threshold"]), float(meta["distance_scale"])
    det.member_scale_ = [float(v) for v in meta["member_scale"]]
    det.n_features_in_ = int(meta["n_features_in"])
    if meta["feature_names_in"] is not None:
        det.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
    det.constant_features_ = np.asarray(meta["constant_features"], dtype=np.int64)
    det.models_, det.history_ = [], []
    for i in range(int(meta["n_members"])):
        folder = path / f"member_{i}"
        # Build in float64 before loading: the detector scores in float64 (see AnomalyDetector).
        model = AutoEncoder.from_spec(read_json(folder / "config.json")).double()
        load_state_strict(model, load_tensors(folder / "model.safetensors"), str(folder / "model.safetensors"))
        det.models_.append(model.eval())
    state = load_tensors(path / "state.safetensors")
    det.train_scores_ = state["train_scores"].numpy()
    det.center_ = state["center"].numpy()
    n = len(det.models_)
    det.feature_scale_ = (
        state["feature_scale"].numpy() if "feature_scale" in state else np.ones((n, det.n_features_in_))
    )
    det.latent_scale_ = [float(v) for v in meta.get("latent_scale", [1.0] * n)]
    det.latent_mean_ = [state[f"latent_mean_{i}"].numpy() for i in range(n) if f"latent_mean_{i}" in state]
    det.latent_precision_ = [
        state[f"latent_precision_{i}"].numpy() for i in range(n) if f"latent_precision_{i}" in state
    ]
    return det


def _common_meta(det: Any) -> dict:
    names = getattr(det, "feature_names_in_", None)
    params = {k: v for k, v in det.get_params(deep=False).items() if k != "detectors"}
    if "random_state" in params and not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    return {
        "format": FORMAT_CLASSIC.format(type(det).__name__),
        "params": params,
        "threshold": det.threshold_,
        "n_features_in": det.n_features_in_,
        "feature_names_in": None if names is None else [str(n) for n in names],
    }


def _save_other(det: Any, path: Path) -> Path:
    from isthmus.tasks.anomaly_classic import CLASSIC_DETECTORS
    from isthmus.tasks.anomaly_ensemble import ScoreAverage

    meta = _common_meta(det)
    arrays = {"train_scores": np.asarray(det.train_scores_, dtype=np.float64)}
    if isinstance(det, ScoreAverage):
        meta["n_members"] = len(det.detectors_)
        arrays.update(center=det.center_, scale=det.scale_)
        for i, member in enumerate(det.detectors_):
            save_detector(member, path / f"member_{i}")
    elif type(det).__name__ in CLASSIC_DETECTORS:
        extra, state = det._state()
        meta["state"], meta["scaler"] = extra, det.scaler_.to_dict()
        arrays.update({k: np.asarray(v) for k, v in state.items()})
    else:
        raise CheckpointError(f"cannot save a {type(det).__name__}: not an isthmus anomaly detector")
    path.mkdir(parents=True, exist_ok=True)
    save_tensors(
        path / "state.safetensors",
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
        metadata={"format": meta["format"]},
    )
    atomic_write_json(path / "detector.json", meta)
    return path


def _load_other(path: Path, meta: dict) -> Any:
    from isthmus.data.scalers import Scaler
    from isthmus.tasks.anomaly_classic import CLASSIC_DETECTORS
    from isthmus.tasks.anomaly_ensemble import ScoreAverage

    name = str(meta["format"])[len("isthmus.") :].rsplit("/", 1)[0]
    if meta["format"] != FORMAT_CLASSIC.format(name) or (name not in CLASSIC_DETECTORS and name != "ScoreAverage"):
        raise CheckpointError(f"{path}/detector.json has unknown format {meta['format']!r}")
    arrays = {k: v.numpy() for k, v in load_tensors(path / "state.safetensors").items()}
    if name == "ScoreAverage":
        members = [load_detector(path / f"member_{i}") for i in range(int(meta["n_members"]))]
        det = ScoreAverage(detectors=members, **meta["params"])
        det.detectors_, det.center_, det.scale_ = members, arrays["center"], arrays["scale"]
    else:
        det = CLASSIC_DETECTORS[name](**meta["params"])
        det.scaler_ = Scaler.from_dict(meta["scaler"])
        det._set_state(meta["state"], {k: v for k, v in arrays.items() if k != "train_scores"})
    det.threshold_, det.n_features_in_ = float(meta["threshold"]), int(meta["n_features_in"])
    det.train_scores_ = arrays["train_scores"]
    if meta["feature_names_in"] is not None:
        det.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
    return det
