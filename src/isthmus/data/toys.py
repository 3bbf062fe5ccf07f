"""Small generated classification toys (offline, exact, milliseconds)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["make_gaussian_classes"]


def make_gaussian_classes(
    n_per_class: int, n_classes: int = 8, radius: float = 1.0, std: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n_classes`` isotropic 2-D Gaussians with centres evenly spaced on a circle of ``radius``.

    Returns ``x`` (n_classes·n_per_class, 2) float32 and ``y`` int64, ordered by class. With the defaults
    (8 classes, radius 1, std 0.1) neighbouring centres are 0.77 apart, so the classes barely overlap —
    the setting of the DKVB paper's 2-D class-incremental toy (arXiv 2207.11240).
    """
    if n_per_class < 1 or n_classes < 2 or std <= 0 or radius <= 0:
        raise ValueError("need n_per_class >= 1, n_classes >= 2, std > 0 and radius > 0")
    rng = np.random.default_rng(seed)
    angles = 2 * math.pi * np.arange(n_classes) / n_classes
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], 1)  # (K, 2)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + std * rng.standard_normal((len(y), 2))
    return x.astype(np.float32), y.astype(np.int64)
