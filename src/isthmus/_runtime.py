"""Runtime defaults for isthmus' own entry points: threads, denormals; plus seeds and device.

Why the defaults exist (measured on the 2-core machines this project targets):
* PyTorch's default of one intra-op thread per core made small models 10-18x *slower* than one
  thread, because thread hand-off dominates tiny matmuls. isthmus trains with 1 thread unless told
  otherwise (``ISTHMUS_THREADS=N``, ``TrainerConfig.threads``).
* Tiny models whose loss nears zero slowed >10x from denormal floats; flushing them fixes it.

``import isthmus`` changes nothing. The defaults apply only inside isthmus' entry points: the CLI
(:func:`configure`, for the whole process it owns), and ``Trainer.fit``, ``Recipe.execute``
(:func:`runtime_defaults`, which restores the caller's settings on exit). ``train_sae`` calls
:func:`configure`. Opt out everywhere with ``ISTHMUS_RUNTIME_DEFAULTS=0``, or per Trainer with
``TrainerConfig.runtime_defaults=False``; an explicit thread count is always honoured.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = [
    "configure",
    "default_threads",
    "defaults_enabled",
    "flush_denormal_enabled",
    "runtime_defaults",
    "seed_everything",
    "resolve_device",
]

_CONFIGURED = False
_OFF = ("0", "false", "no", "off")


def defaults_enabled() -> bool:
    """False when ``$ISTHMUS_RUNTIME_DEFAULTS`` is 0/false/no/off: isthmus then leaves threads and denormals alone."""
    return os.environ.get("ISTHMUS_RUNTIME_DEFAULTS", "1").strip().lower() not in _OFF


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


def flush_denormal_enabled() -> bool:
    """Whether denormal floats are flushed now. torch has no getter, so probe: a flushed denormal reads 0."""
    return bool((torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() == 0.0)


def _apply(threads: int | None, use_defaults: bool) -> None:
    if threads is not None or use_defaults:
        n = threads if threads is not None else default_threads()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    if use_defaults:
        torch.set_flush_denormal(True)


def configure(threads: int | None = None, force: bool = False) -> None:
    """Apply the thread count and denormal flushing to the whole process (for entry points that own it).

    Once per process unless ``force`` or ``threads``; does nothing (bar an explicit ``threads``)
    when the defaults are switched off with ``ISTHMUS_RUNTIME_DEFAULTS=0``.
    """
    global _CONFIGURED
    if _CONFIGURED and not force and threads is None:
        return
    _apply(threads, defaults_enabled())
    _CONFIGURED = True


@contextmanager
def runtime_defaults(threads: int | None = None, enabled: bool = True) -> Iterator[None]:
    """Apply the defaults inside the block and restore the caller's thread count and denormal mode after.

    ``enabled=False`` (or ``ISTHMUS_RUNTIME_DEFAULTS=0``) keeps the caller's settings, except an
    explicit ``threads``.
    """
    use = enabled and defaults_enabled()
    if threads is None and not use:
        yield
        return
    prev_threads, prev_flush = torch.get_num_threads(), flush_denormal_enabled()
    _apply(threads, use)
    try:
        yield
    finally:
        if torch.get_num_threads() != prev_threads:
            torch.set_num_threads(prev_threads)
        if flush_denormal_enabled() != prev_flush:
            torch.set_flush_denormal(prev_flush)


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
