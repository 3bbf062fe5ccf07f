"""Runtime defaults for isthmus' own entry points: threads, denormals, host memory; plus seeds and device.

Why the defaults exist (measured on the 2-core machines this project targets):
* PyTorch's default of one intra-op thread per core made small models 10-18x *slower* than one
  thread, because thread hand-off dominates tiny matmuls. isthmus trains with 1 thread unless told
  otherwise (``ISTHMUS_THREADS=N``, ``TrainerConfig.threads``).
* Tiny models whose loss nears zero slowed >10x from denormal floats; flushing them fixes it.
* glibc hands every allocation above its mmap threshold (at most 32 MiB by default) to a fresh ``mmap``
  and unmaps it on free, so a training step whose buffers exceed that (a TopK SAE at d=768, m=24,576:
  a 100 MB (B, m) pre-activation, two 75 MB gradients) page-faults ~100k fresh pages every step.
  Keeping freed blocks in the heap (:func:`pool_host_memory`: ``mallopt`` thresholds of 1 GiB) made
  that step 1.6-2x faster (``benchmarks/sae_throughput.py``: 1,306 -> 2,101 tokens/s, for-loop Adam).

``import isthmus`` changes nothing. The defaults apply only inside isthmus' entry points: the CLI
(:func:`configure`, for the whole process it owns), and ``Trainer.fit``, ``Recipe.execute``
(:func:`runtime_defaults`, which restores the caller's settings on exit). ``train_sae`` calls
:func:`configure`. Opt out everywhere with ``ISTHMUS_RUNTIME_DEFAULTS=0``, or per Trainer with
``TrainerConfig.runtime_defaults=False``; an explicit thread count is always honoured.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = [
    "configure",
    "default_threads",
    "defaults_enabled",
    "flush_denormal_enabled",
    "host_memory_pooled",
    "pool_host_memory",
    "runtime_defaults",
    "seed_everything",
    "resolve_device",
]

_CONFIGURED = False
_OFF = ("0", "false", "no", "off")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc malloc.h)
_POOL_BYTES = 1 << 30  # blocks up to 1 GiB come from (and go back to) the heap; must fit a C int
_GLIBC_DYNAMIC_MAX = 32 << 20  # where glibc's own dynamic mmap threshold settles on 64-bit
_POOLED = False


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


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``mallopt`` thresholds exist there only), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # musl and others lack it  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def pool_host_memory(enabled: bool = True) -> bool:
    """Keep freed large host blocks for reuse (``True``), or hand the heap back to the system (``False``).

    With ``enabled``, allocations up to 1 GiB are served from the heap and freed memory is kept there,
    so a training loop reuses the same pages step after step instead of page-faulting fresh ``mmap``s.
    The cost is that freed memory stays with the process (peak RSS is not returned). ``False`` sets the
    mmap threshold to 32 MiB (glibc cannot re-enable its dynamic threshold; 32 MiB is where it settles)
    and trims the heap. Returns whether the C library supported it (glibc on Linux); elsewhere a no-op.
    """
    global _POOLED
    libc = _glibc()
    if libc is None:
        return False
    if enabled:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _POOL_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, _POOL_BYTES)
    else:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DYNAMIC_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, 128 << 10)
        libc.malloc_trim(0)
    if ok:
        _POOLED = enabled
    return bool(ok)


def host_memory_pooled() -> bool:
    """Whether :func:`pool_host_memory` is in effect (set by isthmus in this process)."""
    return _POOLED


def _apply(threads: int | None, use_defaults: bool) -> None:
    if threads is not None or use_defaults:
        n = threads if threads is not None else default_threads()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    if use_defaults:
        torch.set_flush_denormal(True)
        if not _POOLED:
            pool_host_memory(True)


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
    prev_threads, prev_flush, prev_pooled = torch.get_num_threads(), flush_denormal_enabled(), _POOLED
    _apply(threads, use)
    try:
        yield
    finally:
        if torch.get_num_threads() != prev_threads:
            torch.set_num_threads(prev_threads)
        if flush_denormal_enabled() != prev_flush:
            torch.set_flush_denormal(prev_flush)
        if _POOLED != prev_pooled:
            pool_host_memory(prev_pooled)


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
