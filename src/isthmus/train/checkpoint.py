"""Training checkpoints: safetensors + JSON folders, written atomically, never pickled.

Layout of ``checkpoint_dir``::

    latest.json                      {"checkpoint": "ckpt-000000120-0", "global_step": 120}
    ckpt-000000120-0/                (global step, 0 = mid-epoch / 1 = epoch end)
        model.safetensors            model.state_dict()
        optimizer.safetensors        every tensor in the optimizer state ("state/<param>/<key>")
        optimizer.json               the rest: class, param_groups, non-tensor state values
        rng.safetensors              torch CPU (+CUDA, grad-noise) generator states, uint8
        trainer_state.json           epoch, step, best val, history, callbacks, config, Python/NumPy RNG
        best_model.safetensors       (only with restore_best) weights of the best validation epoch

A checkpoint is written into a hidden temp folder and renamed into place only when complete;
``latest.json`` is replaced atomically afterwards. A crash mid-write therefore leaves the previous
checkpoint and pointer intact; stray temp folders are removed by the next save.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from isthmus.io import CheckpointError, atomic_write_json, load_tensors, read_json, save_tensors, sha256_file

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "find_latest",
    "list_checkpoints",
    "optimizer_to_flat",
    "optimizer_from_flat",
    "FORMAT",
    "VERSION",
]

FORMAT = "isthmus-trainer-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{9})-([01])$")
_JSON_SCALARS = (type(None), bool, int, float, str)


@dataclass
class Checkpoint:
    """A loaded checkpoint folder (all tensors on CPU)."""

    path: Path
    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]
    best_model: dict[str, torch.Tensor] | None


def checkpoint_name(global_step: int, epoch_end: bool) -> str:
    return f"ckpt-{global_step:09d}-{int(epoch_end)}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def find_latest(root: str | Path) -> Path | None:
    """The folder ``latest.json`` points to, else the newest complete folder, else ``None``."""
    root = Path(root)
    pointer = root / "latest.json"
    if pointer.exists():
        try:
            target = root / json.loads(pointer.read_text())["checkpoint"]
            if target.is_dir():
                return target
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # pointer unreadable: fall back to scanning the folders
    found = list_checkpoints(root)
    return found[-1] if found else None


# ---- optimizer state ↔ safetensors + JSON ---------------------------------------------------------
def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state/<param>/<key>``) and JSON-safe rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{pid}/{key}"] = value
            elif isinstance(value, _JSON_SCALARS):
                scalars.setdefault(str(pid), {})[key] = value
            else:
                raise CheckpointError(
                    f"optimizer state {key!r} of parameter {pid} is a {type(value).__name__}; only tensors "
                    "and JSON scalars can be saved without pickle"
                )
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    for g in groups:
        for k, v in g.items():
            if not isinstance(v, (*_JSON_SCALARS, list)):
                raise CheckpointError(f"optimizer param_group field {k!r} ({type(v).__name__}) is not JSON-safe")
    meta = {"class": type(optimizer).__name__, "param_groups": groups, "scalars": scalars}
    return tensors, meta


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str
) -> None:
    """Load the split state back into ``optimizer``, checking class and parameter layout first."""
    if meta.get("class") != type(optimizer).__name__:
        raise CheckpointError(
            f"{source} holds a {meta.get('class')} state but the trainer uses {type(optimizer).__name__}; "
            "resume with the optimizer the checkpoint was written with"
        )
    current = optimizer.state_dict()["param_groups"]
    saved = meta["param_groups"]
    if [len(g["params"]) for g in saved] != [len(g["params"]) for g in current]:
        raise CheckpointError(
            f"{source} has parameter groups of sizes {[len(g['params']) for g in saved]} but the model has "
            f"{[len(g['params']) for g in current]}; the checkpoint is from a different model"
        )
    groups = []
    for g_saved, g_now in zip(saved, current):
        groups.append({k: (tuple(v) if isinstance(g_now.get(k), tuple) else v) for k, v in g_saved.items()})
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{source} does not fit this optimizer: {exc}") from None


# ---- save / load ------------------------------------------------------------------------------------
def save_checkpoint(
    root: str | Path,
    name: str,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    rng_tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    best_model: dict[str, torch.Tensor] | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``name`` under ``root`` atomically, point ``latest.json`` at it, prune old ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    trash = root / f".trash-{name}-{os.getpid()}"
    tmp.mkdir()
    try:
        opt_tensors, opt_meta = optimizer_to_flat(optimizer)
        save_tensors(tmp / "model.safetensors", model_state, metadata={"format": FORMAT})
        save_tensors(tmp / "optimizer.safetensors", opt_tensors, metadata={"format": FORMAT})
        atomic_write_json(tmp / "optimizer.json", opt_meta)
        save_tensors(tmp / "rng.safetensors", rng_tensors, metadata={"format": FORMAT})
        if best_model is not None:
            save_tensors(tmp / "best_model.safetensors", best_model, metadata={"format": FORMAT})
        # SHA-256 of every tensor file, checked by load_checkpoint: a flipped byte in the tensor data
        # would otherwise resume silently from corrupt weights or optimizer moments.
        digests = {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))}
        atomic_write_json(
            tmp / "trainer_state.json", {"format": FORMAT, "version": VERSION, **state, "sha256": digests}
        )
        final = root / name
        if final.exists():  # re-creating a step after resuming from an older checkpoint
            final.rename(trash)
        tmp.rename(final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash.exists() and not final.exists():  # put the folder we moved aside back
            trash.rename(final)
        raise
    atomic_write_json(root / "latest.json", {"checkpoint": name, "global_step": state.get("global_step")})
    _prune(root, keep, protect=final)
    _remove_stale(root)
    return final


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder; anything missing, truncated or foreign raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint folder")
    state = read_json(path / "trainer_state.json")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}/trainer_state.json is not an isthmus trainer checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}; this isthmus reads {VERSION}")
    digests = state.get("sha256", {})
    for name, want in digests.items() if isinstance(digests, dict) else []:
        file = path / name
        if file.is_file() and sha256_file(file) != want:
            raise CheckpointError(
                f"{file} is corrupt: its SHA-256 does not match trainer_state.json; "
                "resume from an older checkpoint (fit(resume=<folder>))"
            )
    opt_meta = read_json(path / "optimizer.json")
    optimizer = {"tensors": load_tensors(path / "optimizer.safetensors"), "meta": opt_meta}
    best_path = path / "best_model.safetensors"
    return Checkpoint(
        path=path,
        state=state,
        model=load_tensors(path / "model.safetensors"),
        optimizer=optimizer,
        rng_tensors=load_tensors(path / "rng.safetensors"),
        best_model=load_tensors(best_path) if best_path.exists() else None,
    )


def _prune(root: Path, keep: int, protect: Path) -> None:
    for old in list_checkpoints(root)[:-keep]:
        if old != protect:
            shutil.rmtree(old, ignore_errors=True)


def _remove_stale(root: Path) -> None:
    """Delete temp/trash folders left by a crash (ours or a dead process's).

    A folder of another *live* process is left alone: deleting it mid-write crashed that process
    with FileNotFoundError when two runs shared a checkpoint_dir.
    """
    for p in root.iterdir():
        if p.is_dir() and (p.name.startswith(".tmp-ckpt-") or p.name.startswith(".trash-ckpt-")):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on every platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
