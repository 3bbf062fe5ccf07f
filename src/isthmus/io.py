"""Safe, atomic persistence: safetensors for tensors, JSON for everything else. Never pickle.

Writes go to a temporary file in the same folder and are moved into place with ``os.replace``,
so a crash mid-write leaves the previous file intact rather than a truncated one. Files get the
permissions a plain ``open()`` would give (``0666 & ~umask``), so a model saved by one user can be
loaded by another; ``tempfile.mkstemp`` alone would leave them 0600.

:class:`Pretrained` is the one ``save_pretrained`` / ``from_pretrained`` base every saved model
shares: ``config.json`` (architecture + SHA-256 of each weight file) and ``model.safetensors``,
verified on load and returned in eval mode.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from isthmus.config import Config

__all__ = [
    "WEIGHTS_NAME",
    "CheckpointError",
    "Pretrained",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_config_model",
    "load_state_strict",
    "load_tensors",
    "read_json",
    "save_config_model",
    "save_tensors",
    "sha256_file",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(RuntimeError):
    """A saved model or checkpoint is missing, truncated, or does not match the model."""


def _umask() -> int:
    """The process umask. Linux reports it in /proc; elsewhere set-and-restore (POSIX has no getter,
    and setting it is visible to other threads for an instant, so /proc is preferred)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: str | Path, path: Path) -> None:
    """Give ``tmp`` the permissions of a normally created file, fsync it and move it to ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _mkstemp(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file (a full disk says none)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _as_os_error(exc: SafetensorError, path: Path) -> OSError:
    """safetensors reports write failures as ``SafetensorError('... (os error 28)')``; callers (and the
    CLI) handle the ordinary OSError with its errno instead."""
    m = re.search(r"os error (\d+)", str(exc))
    code = int(m.group(1)) if m else errno.EIO
    return OSError(code, f"{os.strerror(code)} while writing", str(path))


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically save a flat name → tensor dict as safetensors (tensors made contiguous, on CPU)."""
    path = Path(path)
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    fd, tmp = _mkstemp(path)
    os.close(fd)
    try:
        try:
            save_file(clean, tmp, metadata=metadata)
        except SafetensorError as exc:
            raise _as_os_error(exc, path) from None
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _publish(tmp, path)
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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); it may be truncated") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` and explain any missing/unexpected/mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: saved {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
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


# ---- the shared save_pretrained / from_pretrained format ------------------------------------------------
def write_pretrained(
    model: torch.nn.Module,
    path: str | Path,
    spec: dict[str, Any],
    metrics: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``model.safetensors`` then ``config.json`` = spec + the weights' SHA-256 (+ ``metrics.json``).

    The weights go first: a crash between the two writes leaves a config whose digest does not
    match, which :func:`read_pretrained` refuses, instead of a silently mixed folder.
    """
    from isthmus import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = path / WEIGHTS_NAME
    save_tensors(weights, model.state_dict(), metadata={"format": "isthmus"})
    config = {
        "isthmus_version": __version__,
        "model": type(model).__name__,
        **spec,
        **(extra or {}),
        "weights": {WEIGHTS_NAME: {"sha256": sha256_file(weights), "bytes": weights.stat().st_size}},
    }
    atomic_write_json(path / CONFIG_NAME, config)
    if metrics is not None:
        atomic_write_json(path / "metrics.json", metrics)
    return path


def read_pretrained_spec(path: str | Path, cls_name: str) -> dict[str, Any]:
    """``config.json`` of a folder written by :func:`write_pretrained`, checked to describe ``cls_name``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder written by save_pretrained")
    if not (path / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"{path / CONFIG_NAME} does not exist; {path} is not a complete saved model "
            f"(it needs {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    spec = read_json(path / CONFIG_NAME)
    if not isinstance(spec, dict):
        raise CheckpointError(f"{path / CONFIG_NAME} is not an isthmus model config (expected a JSON object)")
    if spec.get("model") != cls_name:
        raise CheckpointError(
            f"{path / CONFIG_NAME} describes a {spec.get('model')!r}, not a {cls_name}; "
            f"load it with {spec.get('model')}.from_pretrained"
        )
    return spec


def read_verified_weights(path: str | Path, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Load ``model.safetensors`` after checking its SHA-256 against ``config.json``.

    A folder saved before digests existed loads with a warning; a digest that does not match is a
    :class:`CheckpointError` (a flipped byte in the tensor data otherwise loads as a broken model).
    """
    path = Path(path)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} does not exist; {path} is not a complete saved model")
    recorded = spec.get("weights", {})
    entry = recorded.get(WEIGHTS_NAME) if isinstance(recorded, dict) else None
    if isinstance(entry, dict) and "sha256" in entry:
        actual = sha256_file(weights)
        if actual != entry["sha256"]:
            raise CheckpointError(
                f"{weights} is corrupt or was replaced: its SHA-256 is {actual[:12]}… but {path / CONFIG_NAME} "
                f"records {str(entry['sha256'])[:12]}…; restore the folder from a good copy (or re-save the model)"
            )
    else:
        warnings.warn(
            f"{path / CONFIG_NAME} records no SHA-256 of {WEIGHTS_NAME} (saved by an older isthmus); "
            "its integrity is not checked; re-save it with save_pretrained",
            stacklevel=3,
        )
    return load_tensors(weights)


class Pretrained:
    """``save_pretrained(path)`` / ``from_pretrained(path, map_location=)`` for an ``nn.Module``.

    Every saved isthmus model shares this format: ``config.json`` (``model`` = class name, the
    architecture, the SHA-256 of the weights) + ``model.safetensors``. ``from_pretrained`` verifies
    the digest, loads strictly and returns the model in eval mode (as Hugging Face does), so
    inference is deterministic (no dropout, VAE posterior mean, no denoising corruption).

    A model built from one typed config sets ``config_class`` and keeps it as ``self.config``;
    others override :meth:`_pretrained_spec` and :meth:`_from_pretrained_spec`.
    """

    config_class: ClassVar[type[Config] | None] = None
    config_attr: ClassVar[str] = "config"

    def _pretrained_spec(self) -> dict[str, Any]:
        """JSON that rebuilds the architecture (merged into ``config.json``)."""
        return {"config": getattr(self, self.config_attr).to_dict()}

    @classmethod
    def _from_pretrained_spec(cls, spec: dict[str, Any], path: Path, **kwargs: Any) -> Any:
        """An untrained instance built from ``config.json``; ``kwargs`` are from_pretrained's extras."""
        if cls.config_class is None:
            raise TypeError(f"{cls.__name__} must set config_class or override _from_pretrained_spec")
        if kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected arguments {sorted(kwargs)}")
        if "config" not in spec:
            raise CheckpointError(f"{path / CONFIG_NAME} has no 'config' entry")
        # the mixin has no __init__; the nn.Module it is mixed into takes the config
        return cast(Any, cls)(cls.config_class.from_dict(spec["config"]))

    def save_pretrained(self, path: str | Path, metrics: dict | None = None, extra: dict | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ ``metrics.json``) into folder ``path``."""
        return write_pretrained(self, path, self._pretrained_spec(), metrics, extra)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu", **kwargs: Any) -> Any:
        """Load a folder written by :meth:`save_pretrained`, verified, on ``map_location``, in eval mode."""
        path = Path(path)
        spec = read_pretrained_spec(path, cls.__name__)
        model = cls._from_pretrained_spec(spec, path, **kwargs)
        load_state_strict(model, read_verified_weights(path, spec), str(path / WEIGHTS_NAME))
        return model.to(map_location).eval()


def save_config_model(
    model: torch.nn.Module, path: str | Path, config: Any, metrics: dict | None = None, extra: dict | None = None
) -> Path:
    """Function form of :meth:`Pretrained.save_pretrained` for a model built from one typed ``config``."""
    return write_pretrained(model, path, {"config": config.to_dict()}, metrics, extra)


def load_config_model(cls: type, config_cls: type[Config], path: str | Path, map_location: Any = "cpu") -> Any:
    """Function form of :meth:`Pretrained.from_pretrained`: ``cls(config_cls.from_dict(...))``, verified, eval."""
    path = Path(path)
    spec = read_pretrained_spec(path, cls.__name__)
    if "config" not in spec:
        raise CheckpointError(f"{path / CONFIG_NAME} has no 'config' entry")
    model = cls(config_cls.from_dict(spec["config"]))
    load_state_strict(model, read_verified_weights(path, spec), str(path / WEIGHTS_NAME))
    return model.to(map_location).eval()
