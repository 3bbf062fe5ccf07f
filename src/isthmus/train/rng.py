"""Capture and restore every RNG a training step can touch, without pickle.

Torch generator states are uint8 tensors (saved in safetensors); Python ``random`` and NumPy's
legacy global state are converted to JSON-safe lists.
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch

from isthmus.io import CheckpointError

__all__ = ["capture_rng", "restore_rng"]


def capture_rng(extra: dict[str, torch.Generator] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, json_meta)`` holding torch CPU/CUDA, ``extra`` generators, Python and NumPy states."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    for name, gen in (extra or {}).items():
        tensors[f"gen_{name}"] = gen.get_state()
    version, internal, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = cast(tuple, np.random.get_state(legacy=True))
    meta = {
        "python": [version, list(internal), gauss_next],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_cached)],
    }
    return tensors, meta


def restore_rng(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], extra: dict[str, torch.Generator] | None = None
) -> None:
    """Inverse of :func:`capture_rng`; raises :class:`CheckpointError` when a state is missing."""
    try:
        torch.set_rng_state(tensors["torch_cpu"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        for name, gen in (extra or {}).items():
            gen.set_state(tensors[f"gen_{name}"])
        version, internal, gauss_next = meta["python"]
        random.setstate((version, tuple(internal), gauss_next))
        np_name, np_keys, np_pos, np_has_gauss, np_cached = meta["numpy"]
        np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_cached))
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint RNG state is missing or malformed ({exc!r})") from None
