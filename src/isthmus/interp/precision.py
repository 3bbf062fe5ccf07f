"""Device and precision choices shared by the SAE commands: ``--device auto|cpu|cuda|mps`` and
``--dtype float32|bfloat16|float16``.

Precision means *autocast*: parameters, optimizer state and the stored activations keep their own dtype;
matmuls run in the low precision inside :func:`autocast` (host forward during harvest/splice, the SAE
forward during training). That is how SAELens (``autocast``, ``autocast_lm``) and dictionary_learning
(``autocast_dtype``) do mixed precision, and it keeps Adam's state in float32.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

__all__ = ["DEVICES", "DTYPES", "resolve_device", "resolve_dtype", "autocast", "module_device"]

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → CUDA if present, else Apple MPS if present, else CPU; ``cuda:N`` etc. pass through.

    Raises ValueError naming what is available when the requested device is not."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r} is not a device; use one of {list(DEVICES)} or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this torch build sees no CUDA GPU; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: MPS is not available here; use --device cpu or auto")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' (or a torch dtype) → torch dtype; None → float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    return DTYPES[dtype]


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: str | torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for a low-precision ``dtype``; a no-op for float32 (or None)."""
    dt = resolve_dtype(dtype)
    if dt == torch.float32:
        yield
        return
    dev = torch.device(device)
    with torch.autocast(device_type=dev.type, dtype=dt):
        yield


def module_device(module: Any) -> torch.device:
    """The device of a module's first parameter (CPU for parameter-free modules)."""
    p = next(module.parameters(), None) if hasattr(module, "parameters") else None
    return p.device if p is not None else torch.device("cpu")
