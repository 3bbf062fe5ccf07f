"""Save and load a fitted :class:`~isthmus.tasks.anomaly.AnomalyDetector` without pickle.

Folder layout: ``detector.json`` (constructor parameters, scaler statistics, threshold and the
other learned scalars), ``state.safetensors`` (training scores, distance centre) and one
``member_<i>/`` per autoencoder written by :meth:`AutoEncoder.save_pretrained`. A ``model=``
callable is not serialisable, so it is stored as ``null``: the loaded detector scores exactly
like the saved one, but refitting it uses the default architecture unless ``model`` is set again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from isthmus.io import CheckpointError, atomic_write_json, load_state_strict, load_tensors, read_json, save_tensors

if TYPE_CHECKING:
    from isthmus.tasks.anomaly import AnomalyDetector

__all__ = ["save_detector", "load_detector"]

FORMAT = "isthmus.AnomalyDetector/1"


def save_detector(det: "AnomalyDetector", path: str | Path) -> Path:
    """Write fitted ``det`` into folder ``path`` (created); returns the folder."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(det, "threshold_")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    params = det.get_params()
    if params["model"] is not None and not isinstance(params["model"], dict):
        params["model"] = None  # a callable cannot be written as JSON (see the module docstring)
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    names = getattr(det, "feature_names_in_", None)
    meta = {"format": FORMAT, "params": params, "scaler": det.scaler_.to_dict(),
            "threshold": det.threshold_, "member_scale": list(det.member_scale_),
            "distance_scale": det.distance_scale_, "n_features_in": det.n_features_in_,
            "feature_names_in": None if names is None else [str(n) for n in names],
            "constant_features": [int(i) for i in det.constant_features_], "n_members": len(det.models_)}
    for i, model in enumerate(det.models_):
        if not hasattr(model, "save_pretrained"):
            raise CheckpointError(f"member {i} ({type(model).__name__}) has no save_pretrained; "
                                  "only isthmus AutoEncoders can be saved")
        model.save_pretrained(path / f"member_{i}")
    save_tensors(path / "state.safetensors", {"train_scores": torch.from_numpy(det.train_scores_),
                                              "center": torch.from_numpy(det.center_)}, metadata={"format": FORMAT})
    atomic_write_json(path / "detector.json", meta)
    return path


def load_detector(path: str | Path) -> "AnomalyDetector":
    """Read a folder written by :func:`save_detector`."""
    from isthmus.data.scalers import Scaler
    from isthmus.models import AutoEncoder
    from isthmus.tasks.anomaly import AnomalyDetector

    path = Path(path)
    if not (path / "detector.json").is_file():
        raise CheckpointError(f"{path} has no detector.json; it is not a folder written by AnomalyDetector.save")
    meta = read_json(path / "detector.json")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}/detector.json has format {meta.get('format')!r}, expected {FORMAT!r}")
    det = AnomalyDetector(**meta["params"])
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
    return det
