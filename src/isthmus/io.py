"""Safe, atomic persistence: safetensors for tensors, JSON for everything else. Never pickle.

Writes go to a temporary file in the same folder and are moved into place with ``os.replace``,
so a crash mid-write leaves the previous file intact rather than a truncated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = ["CheckpointError", "atomic_write_bytes", "atomic_write_json", "save_tensors", "load_tensors", "read_json"]


class CheckpointError(RuntimeError):
    """A saved model or checkpoint is missing, truncated, or does not match the model."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically save a flat name → tensor dict as safetensors (tensors made contiguous, on CPU)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(clean, tmp, metadata=metadata)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({exc}); it may be truncated or from another tool"
        ) from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); it may be truncated") from None


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` and explain any missing/unexpected/mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: saved {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise CheckpointError(f"{source} does not match the model: " + ", ".join(parts))
    module.load_state_dict(state, strict=True)


def save_config_model(model: torch.nn.Module, path: str | Path, config: Any, metrics: dict | None = None,
                      extra: dict | None = None) -> Path:
    """Write a model built from one typed config: ``config.json`` ({model, config, ...}) + ``model.safetensors``.

    The shared format of the models whose constructor takes a single config (SAE, StackVAE-G, GP-VAE,
    toy transformers); ``AutoEncoder`` has its own spec because it is assembled from three parts.
    """
    from isthmus import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_tensors(path / "model.safetensors", model.state_dict(), metadata={"format": "isthmus"})
    atomic_write_json(path / "config.json", {"isthmus_version": __version__, "model": type(model).__name__,
                                             "config": config.to_dict(), **(extra or {})})
    if metrics is not None:
        atomic_write_json(path / "metrics.json", metrics)
    return path


def load_config_model(cls: type, config_cls: type, path: str | Path, map_location: Any = "cpu") -> Any:
    """Rebuild ``cls(config_cls.from_dict(...))`` from a folder written by :func:`save_config_model`."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder written by save_pretrained")
    spec = read_json(path / "config.json")
    if spec.get("model") != cls.__name__:
        raise CheckpointError(f"{path}/config.json describes a {spec.get('model')!r}, not a {cls.__name__}")
    if "config" not in spec:
        raise CheckpointError(f"{path}/config.json has no 'config' entry")
    model = cls(config_cls.from_dict(spec["config"]))
    load_state_strict(model, load_tensors(path / "model.safetensors"), str(path / "model.safetensors"))
    return model.to(map_location)
