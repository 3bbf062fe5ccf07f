"""Plots people would rather look at than read: image grids, latent maps, training curves.

Matplotlib with the non-interactive Agg backend (no display on servers); every function writes a
PNG and returns its path. Imports only numpy and matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "pyplot",
    "save_figure",
    "image_grid",
    "save_image_grid",
    "sample_panels",
    "latent_map",
    "training_curves",
    "seed_bars",
]


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (servers have no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write as PNG and close ``fig`` (closing frees memory in long recipe runs)."""
    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def image_grid(images: np.ndarray, ncol: int = 10, pad: int = 1) -> np.ndarray:
    """Tile ``(N, H, W)``, ``(N, 1|3, H, W)`` or ``(N, H, W, 3)`` images into one 2-D/RGB array."""
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 4 and imgs.shape[1] in (1, 3):
        imgs = imgs.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    if imgs.ndim not in (3, 4):
        raise ValueError(f"image_grid expects (N, H, W[, C]) images, got shape {imgs.shape}")
    n, h, w = imgs.shape[:3]
    nrow = int(np.ceil(n / ncol))
    shape = (nrow * (h + pad) + pad, ncol * (w + pad) + pad) + imgs.shape[3:]
    grid = np.ones(shape, dtype=np.float32)
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return grid


def save_image_grid(
    rows: Sequence[np.ndarray], path: str | Path, row_labels: Sequence[str] | None = None, title: str | None = None
) -> Path:
    """Save several rows of images (e.g. originals / AE / PCA) as one labelled PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.2 * len(rows) + 0.6), squeeze=False)
    for i, row in enumerate(rows):
        ax = axes[i, 0]
        grid = image_grid(np.clip(row, 0, 1), ncol=len(row))
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if row_labels:
            ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def sample_panels(grids: Mapping[str, np.ndarray], path: str | Path, dpi: int = 90) -> Path:
    """One titled panel per name: ``(rows, cols, H, W)`` grey samples in [0, 1] tiled without gaps (e.g. one
    generator's class-conditional samples per panel, side by side)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 4.0), squeeze=False)
    for ax, (name, g) in zip(axes[0], grids.items()):
        g = np.asarray(g)
        if g.ndim != 4:
            raise ValueError(f"sample_panels expects (rows, cols, H, W) grids, got {g.shape} for {name!r}")
        rows, cols, h, w = g.shape
        ax.imshow(g.transpose(0, 2, 1, 3).reshape(rows * h, cols * w), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    return save_figure(fig, path, dpi=dpi)


def latent_map(z: np.ndarray, labels: np.ndarray | None, path: str | Path, title: str = "latent map") -> Path:
    """Scatter the first two principal axes of latents ``z`` (N, D), coloured by label."""
    plt = pyplot()
    z = np.asarray(z, dtype=np.float64)
    if z.shape[1] > 2:
        zc = z - z.mean(0)
        _, _, vt = np.linalg.svd(zc, full_matrices=False)
        z2 = zc @ vt[:2].T
        axis = ("PC 1 of latents", "PC 2 of latents")
    else:
        z2 = z if z.shape[1] == 2 else np.c_[z, np.zeros(len(z))]
        axis = ("z 1", "z 2")
    fig, ax = plt.subplots(figsize=(6, 5))
    colour = {"c": labels, "cmap": "tab10"} if labels is not None else {"color": "C0"}
    sc = ax.scatter(z2[:, 0], z2[:, 1], s=8, alpha=0.8, **colour)
    if labels is not None:
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(axis[0])
    ax.set_ylabel(axis[1])
    ax.set_title(title)
    return save_figure(fig, path)


def training_curves(
    history: Sequence[dict], path: str | Path, keys: Sequence[str] = ("train_loss", "val_loss"), title: str = "training"
) -> Path:
    """Plot per-epoch values of ``keys`` from a trainer history (list of dicts)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        vals = [h.get(key) for h in history]
        if any(v is not None for v in vals):
            ax.plot(range(1, len(vals) + 1), [np.nan if v is None else v for v in vals], label=key)
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)


def seed_bars(
    ax,
    values: Mapping[str, Sequence[float]],
    *,
    highlight: str | None = None,
    offset: float = 0.0,
    width: float = 0.8,
    color: str | None = None,
    label: str | None = None,
    rotation: float = 20,
):
    """One bar per arm at its mean with one dot per seed on top (a recipe's arms side by side).

    ``values`` maps arm → per-seed values, drawn in that order at x = 0, 1, ...; ``highlight`` paints
    one arm (ours) red and the rest grey unless ``color`` fixes one colour; ``offset``/``width`` place
    several metrics side by side at each arm (call once per metric, each with its ``label``). Seeds
    are shown because a mean hides what the paired interval is made of. Returns ``ax``.
    """
    arms = list(values)
    for i, arm in enumerate(arms):
        v = np.asarray(values[arm], dtype=float)
        if v.size == 0:
            continue
        c = color or ("tab:red" if arm == highlight else "tab:gray")
        ax.bar(i + offset, float(v.mean()), width, color=c, alpha=0.55, label=label if i == 0 else None)
        ax.plot(np.full(v.size, i + offset), v, "k.", ms=3)
    ax.set_xticks(range(len(arms)), arms, rotation=rotation, fontsize=7)
    return ax
