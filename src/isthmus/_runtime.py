"""Process-wide runtime defaults: threads, denormals, seeds, device.

Why these exist (measured on the 2-core machines this project targets):
* PyTorch's default of one intra-op thread per core made small models 10-18x *slower* than one
  thread, because thread hand-off dominates tiny matmuls. We default to 1 thread and let users
  raise it (``ISTHMUS_THREADS`` or :func:`configure`).
* Tiny models whose loss nears zero slowed >10x from denormal floats; flushing them fixes it.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["configure", "default_threads", "seed_everything", "resolve_device"]

_CONFIGURED = False


def default_threads() -> int:
    """Intra-op threads: ``$ISTHMUS_THREADS`` if set, else 1 (fastest for small models on CPU)."""
    env = os.environ.get("ISTHMUS_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"ISTHMUS_THREADS must be an integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"ISTHMUS_THREADS must be >= 1, got {n}")
        return n
    return 1


def configure(threads: int | None = None, force: bool = False) -> None:
    """Apply the thread count and denormal flushing once per process (idempotent)."""
    global _CONFIGURED
    if _CONFIGURED and not force and threads is None:
        return
    n = threads if threads is not None else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    _CONFIGURED = True


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/"auto" → CUDA when present, else CPU; anything else is passed to torch.device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
