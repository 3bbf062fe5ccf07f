"""Procedural moving-shape clips whose labels need temporal order (for recurrent video encoders).

A square moves across a ``size × size`` frame for ``frames`` steps. The label is its direction of
motion (4 classes: right, left, down, up), so a clip and its time reversal have different labels while
holding exactly the same set of frames: a model that ignores frame order (averaging per-frame
predictions) can do no better than chance between opposite directions. Start positions, speeds,
sizes, brightness and background noise vary; everything is drawn from ``seed``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moving_shapes", "DIRECTIONS"]

DIRECTIONS = ("right", "left", "down", "up")
_STEP = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}  # (d_row, d_col) per class


def moving_shapes(n: int, frames: int = 8, size: int = 24, seed: int = 0, noise: float = 0.05
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(clips (n, frames, 1, size, size) float32 in [0, 1], labels (n,) int64)``."""
    if n < 1 or frames < 2 or size < 8:
        raise ValueError(f"need n >= 1, frames >= 2, size >= 8; got {n}, {frames}, {size}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    clips = rng.normal(0, noise, (n, frames, 1, size, size)).astype(np.float32)
    for k in range(n):
        side = int(rng.integers(3, 6))
        speed = float(rng.uniform(0.8, 1.6))
        travel = speed * (frames - 1)
        dr, dc = _STEP[int(y[k])]
        lo, hi = 0.0, size - side - abs(dr or dc) * travel  # room for the whole path
        start = np.array([rng.uniform(0, size - side), rng.uniform(0, size - side)])
        axis = 0 if dr else 1
        s = rng.uniform(lo, max(lo, hi))
        start[axis] = s if (dr or dc) > 0 else s + travel
        bright = float(rng.uniform(0.6, 1.0))
        for t in range(frames):
            r, c = start + t * speed * np.array([dr, dc])
            r0, c0 = int(round(r)), int(round(c))
            clips[k, t, 0, r0:r0 + side, c0:c0 + side] += bright
    return np.clip(clips, 0.0, 1.0), y.astype(np.int64)
