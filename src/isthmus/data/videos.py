"""Procedural moving-shape clips whose labels need temporal order (for recurrent video encoders).

A square moves across a ``size × size`` frame for ``frames`` steps. The label is its direction of
motion (4 classes: right, left, down, up), so a clip and its time reversal have different labels while
holding exactly the same set of frames: a model that ignores frame order (averaging per-frame
predictions) can do no better than chance between opposite directions. Start positions, speeds,
sizes, brightness and background noise vary; everything is drawn from ``seed``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moving_shapes", "moving_digits", "pan_video", "DIRECTIONS", "MOTIONS"]

DIRECTIONS = ("right", "left", "down", "up")
_STEP = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}  # (d_row, d_col) per class


def moving_shapes(
    n: int, frames: int = 8, size: int = 24, seed: int = 0, noise: float = 0.05
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
            clips[k, t, 0, r0 : r0 + side, c0 : c0 + side] += bright
    return np.clip(clips, 0.0, 1.0), y.astype(np.int64)


MOTIONS = ("right", "left", "down", "up", "clockwise", "anticlockwise")


def moving_digits(
    digits: np.ndarray,
    labels: np.ndarray,
    n: int,
    frames: int = 10,
    size: int = 24,
    digit: int = 12,
    cue: float = 0.5,
    seed: int = 0,
    jitter: float = 0.0,
    noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clips of one MNIST digit moving on a ``size × size`` canvas; the label is the motion (6 classes).

    Lines wrap around the canvas and start at a random phase, so the position in one frame says nothing
    about the direction; circles (radius ``size / 4``) run clockwise or anticlockwise. Appearance cue
    (the referee card's stand-in for UCF's scene cues): with probability ``cue`` the digit is the motion
    class's preferred digit (its index), else any digit, so one frame alone is informative but not enough.
    Difficulty knobs (0 = off): ``jitter`` adds independent Gaussian noise (std in pixels) to the digit's
    position in every frame, so one step's displacement is unreliable and the direction has to be integrated
    over the clip; ``noise`` adds Gaussian pixel noise (std) to every frame, clipped to [0, 1].
    ``digits``: ``(M, 28, 28)`` images in [0, 1] with ``labels``; returns ``(clips (n, T, 1, S, S), y (n,))``.
    """
    from PIL import Image

    if jitter < 0 or noise < 0:
        raise ValueError(f"jitter and noise are standard deviations, need >= 0; got {jitter}, {noise}")

    rng = np.random.default_rng(seed)
    small = np.stack(
        [
            np.asarray(Image.fromarray((d * 255).astype(np.uint8)).resize((digit, digit), Image.Resampling.BILINEAR))
            / 255.0
            for d in digits
        ]
    ).astype(np.float32)
    by_label = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    y = rng.integers(0, len(MOTIONS), n)
    clips = np.zeros((n, frames, 1, size, size), np.float32)
    for k in range(n):
        m = int(y[k])
        pick = rng.choice(by_label[m]) if rng.random() < cue and m in by_label else rng.integers(len(small))
        img = small[pick]
        phase = rng.uniform(0, 2 * np.pi)
        start = rng.integers(0, size, 2)
        speed = rng.uniform(1.5, 2.5)
        for t in range(frames):
            if m < 4:
                dr, dc = _STEP[m]
                r, c = start[0] + dr * speed * t, start[1] + dc * speed * t
            else:
                sign = 1 if m == 4 else -1
                ang = phase + sign * 0.5 * t
                r, c = size / 2 + size / 4 * np.sin(ang) - digit / 2, size / 2 + size / 4 * np.cos(ang) - digit / 2
            if jitter > 0:
                r, c = r + rng.normal(0, jitter), c + rng.normal(0, jitter)
            rr = (int(round(r)) + np.arange(digit)) % size
            cc = (int(round(c)) + np.arange(digit)) % size
            clips[k, t, 0][np.ix_(rr, cc)] = np.maximum(clips[k, t, 0][np.ix_(rr, cc)], img)
    if noise > 0:
        clips = np.clip(clips + rng.normal(0, noise, clips.shape).astype(np.float32), 0.0, 1.0)
    return clips, y.astype(np.int64)


def pan_video(
    photo: np.ndarray,
    frames: int = 24,
    height: int = 48,
    width: int = 64,
    seed: int = 0,
    downscale: float = 2.5,
    zoom: float = 1.25,
    pan: float = 0.25,
) -> np.ndarray:
    """A synthetic camera move over a real photo: a linear pan plus a zoom with sub-pixel motion.

    ``photo`` ``(H, W, 3)`` in [0, 1] is first downscaled by ``downscale`` (antialiased), then each frame
    samples a ``height × width`` window by bilinear interpolation; over the clip the window's centre moves
    by ``pan`` of the free room in a seeded direction and its scale shrinks from 1 to ``1/zoom``.
    Returns ``(frames, 3, height, width)`` float32 in [0, 1].
    """
    from PIL import Image
    from scipy.ndimage import map_coordinates

    img = np.asarray(photo, np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"photo must be (H, W, 3), got {img.shape}")
    h0, w0 = int(img.shape[0] / downscale), int(img.shape[1] / downscale)
    if h0 < 2 * height or w0 < 2 * width:
        raise ValueError(f"photo {img.shape[:2]} is too small for {height}x{width} frames at downscale {downscale}")
    small = (
        np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((w0, h0), Image.Resampling.LANCZOS), np.float32)
        / 255.0
    )
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, 2 * np.pi)
    room = np.array([h0 - height, w0 - width]) / 2.0
    start = np.array([h0, w0]) / 2.0 - pan * room * np.array([np.sin(ang), np.cos(ang)])
    end = np.array([h0, w0]) / 2.0 + pan * room * np.array([np.sin(ang), np.cos(ang)])
    ys, xs = np.arange(height) - (height - 1) / 2, np.arange(width) - (width - 1) / 2
    out = np.empty((frames, 3, height, width), np.float32)
    for k in range(frames):
        a = k / max(1, frames - 1)
        cy, cx = (1 - a) * start + a * end
        s = 1.0 / (1 + (zoom - 1) * a)  # window scale: zooming in
        yy, xx = np.meshgrid(cy + s * ys, cx + s * xs, indexing="ij")
        for ch in range(3):
            out[k, ch] = map_coordinates(small[..., ch], [yy, xx], order=1, mode="reflect")
    return np.clip(out, 0.0, 1.0)
