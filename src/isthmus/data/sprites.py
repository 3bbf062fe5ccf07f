"""Procedural sprite videos whose middle frames are *not* fixed by their first and last frames (DiCoDe toy).

:func:`moving_sprites` renders 1–2 bright square sprites on a dark ``size × size`` frame. Each moves with
momentum plus a random acceleration every frame (``|a| ≤ max_accel`` per axis, speed clipped to
``max_speed``) and bounces off the walls of its own region (two sprites live in the left and right part
of the frame, separated by a 2-px gap, so they never touch and always form separate blobs). Returns
the frames and the ground-truth top-left positions. :func:`blobs` finds the sprites back (connected
components above a threshold): the detector behind the validity and plausibility metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SpriteVideos", "moving_sprites", "blobs"]


@dataclass
class SpriteVideos:
    video: np.ndarray  # (n, T, 1, size, size) float32 in [0, 1]
    positions: np.ndarray  # (n, T, 2 sprites, 2) top-left (row, col); NaN for an absent second sprite
    counts: np.ndarray  # (n,) sprites per sequence
    sprite: int  # sprite side in pixels
    max_accel: float
    max_speed: float


def _regions(size: int, sprite: int, count: int) -> list[tuple[float, float, float, float]]:
    """Per sprite (row_lo, row_hi, col_lo, col_hi) bounds of its top-left corner."""
    hi = float(size - sprite)
    if count == 1:
        return [(0.0, hi, 0.0, hi)]
    half = size // 2
    return [(0.0, hi, 0.0, float(half - 1 - sprite)), (0.0, hi, float(half + 1), hi)]


def moving_sprites(
    n: int,
    frames: int = 32,
    size: int = 16,
    sprite: int = 3,
    max_speed: float = 1.5,
    max_accel: float = 0.5,
    seed: int = 0,
) -> SpriteVideos:
    if n < 1 or frames < 2 or size < 4 * sprite or sprite < 1:
        raise ValueError(
            f"need n >= 1, frames >= 2, sprite >= 1 and size >= 4*sprite; got {n}, {frames}, {size}, {sprite}"
        )
    rng = np.random.default_rng(seed)
    video = np.zeros((n, frames, 1, size, size), np.float32)
    pos = np.full((n, frames, 2, 2), np.nan)
    counts = rng.integers(1, 3, n)
    for i in range(n):
        for j, (r0, r1, c0, c1) in enumerate(_regions(size, sprite, int(counts[i]))):
            lo, hi = np.array([r0, c0]), np.array([r1, c1])
            p = rng.uniform(lo, hi)
            v = rng.uniform(-max_speed, max_speed, 2)
            for t in range(frames):
                pos[i, t, j] = p
                r, c = np.rint(p).astype(int)
                video[i, t, 0, r : r + sprite, c : c + sprite] = 1.0
                v = np.clip(v + rng.uniform(-max_accel, max_accel, 2), -max_speed, max_speed)
                p = p + v
                for k in range(2):  # bounce off the region's walls
                    if p[k] < lo[k]:
                        p[k], v[k] = 2 * lo[k] - p[k], -v[k]
                    if p[k] > hi[k]:
                        p[k], v[k] = 2 * hi[k] - p[k], -v[k]
                p = np.clip(p, lo, hi)
    return SpriteVideos(video, pos, counts, sprite, max_accel, max_speed)


def blobs(frame: np.ndarray, threshold: float = 0.5) -> list[tuple[int, np.ndarray]]:
    """Connected components (4-connectivity) of ``frame > threshold`` of a ``(H, W)`` or ``(1, H, W)``
    frame: ``[(area in pixels, centroid (row, col))]``, largest first."""
    from scipy import ndimage

    f = np.asarray(frame).reshape(np.asarray(frame).shape[-2:]) > threshold
    lab, k = ndimage.label(f)
    out = [(int((lab == i).sum()), np.array(ndimage.center_of_mass(f, lab, i))) for i in range(1, k + 1)]
    return sorted(out, key=lambda b: -b[0])
