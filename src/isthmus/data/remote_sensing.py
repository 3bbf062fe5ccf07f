"""Remote-sensing loaders: Statlog Landsat patches and RGB GeoTIFF scenes (local files only).

* :func:`load_statlog_landsat` — UCI "Statlog (Landsat Satellite)": 3×3-pixel neighbourhoods
  of 4 Landsat MSS bands (36 numbers, 0–255) with the land-cover class of the centre pixel.
* :func:`load_geotiff_rgb` — a 3-band 8-bit GeoTIFF read with Pillow (no GDAL/rasterio) plus a
  valid-data mask (pixels that are 0 in every band are the nodata collar).
* :func:`pixel_patches` — per-pixel ``k×k`` neighbourhood features of an ``(H, W, C)`` image,
  the same feature layout as Statlog, so one clustering pipeline serves both.

Default locations come from :func:`isthmus.data.paths.find_data`; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isthmus.data.paths import DataNotFoundError, find_data
from isthmus.data.table import Table
from isthmus.data.validation import DataError

__all__ = ["STATLOG_CLASSES", "load_statlog_landsat", "load_geotiff_rgb", "pixel_patches"]

# UCI documentation: class 6 ("mixture") has no samples.
STATLOG_CLASSES = {
    1: "red soil",
    2: "cotton crop",
    3: "grey soil",
    4: "damp grey soil",
    5: "soil with vegetation stubble",
    7: "very damp grey soil",
}
_STATLOG_FILES = {"train": "sat.trn", "test": "sat.tst"}


def _read_statlog(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataNotFoundError(f"Statlog Landsat file not found: {path}")
    text = path.read_text().split("\n", 2)
    # The shared copy carries one added header row of column numbers; the UCI original has none.
    first = text[0].split()
    skip = 1 if len(first) == 37 and [int(v) for v in first[:3]] == [1, 2, 3] else 0
    try:
        arr = np.loadtxt(path, dtype=np.int64, skiprows=skip)
    except ValueError as exc:
        raise DataError(
            f"{path}: not a Statlog Landsat table ({exc}); expected 37 whitespace-separated "
            "integers per row (36 features + class)"
        ) from None
    if arr.ndim != 2 or arr.shape[1] != 37:
        raise DataError(f"{path}: expected 37 columns (36 features + class), got shape {arr.shape}")
    bad = sorted(set(np.unique(arr[:, -1]).tolist()) - set(STATLOG_CLASSES))
    if bad:
        raise DataError(f"{path}: unknown class label(s) {bad}; Statlog classes are {sorted(STATLOG_CLASSES)}")
    return arr


def load_statlog_landsat(root: str | Path | None = None, split: str = "train") -> Table:
    """Statlog Landsat as a Table: X ``(N, 36)`` float32 raw counts (0–255), y class codes.

    ``split``: ``"train"`` (4435 rows, ``sat.trn``), ``"test"`` (2000, ``sat.tst``) or ``"both"``.
    Feature order is pixel-major (9 pixels of the 3×3 window, row by row) × 4 bands; the centre
    pixel is columns 16–19. Labels keep the UCI codes {1, 2, 3, 4, 5, 7}; names are in
    ``meta["class_names"]``. ``root`` defaults to ``find_data("statlog-landsat")``.
    """
    if split not in ("train", "test", "both"):
        raise DataError(f"load_statlog_landsat: split must be 'train', 'test' or 'both', got {split!r}")
    folder = Path(root) if root is not None else find_data("statlog-landsat")
    parts = ["train", "test"] if split == "both" else [split]
    arrays = [_read_statlog(folder / _STATLOG_FILES[p]) for p in parts]
    arr = np.concatenate(arrays)
    names = [f"p{p}_b{b}" for p in range(9) for b in range(1, 5)]
    meta = {
        "source": str(folder),
        "name": "statlog-landsat",
        "split": split,
        "class_names": dict(STATLOG_CLASSES),
        "window": (3, 3),
        "bands": 4,
        "split_index": np.concatenate([np.full(len(a), i) for i, a in enumerate(arrays)]),
    }
    return Table(arr[:, :-1].astype(np.float32), arr[:, -1].astype(np.int64), names, meta)


def load_geotiff_rgb(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit RGB GeoTIFF as ``(image (H, W, 3) uint8, valid (H, W) bool)``.

    ``valid`` is False where all three bands are 0 (the nodata collar of Landsat scenes).
    ``path`` defaults to ``find_data("landsat7-crop") / "RGB.byte.tif"``.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path) if path is not None else find_data("landsat7-crop") / "RGB.byte.tif"
    if not p.is_file():
        raise DataNotFoundError(f"GeoTIFF not found: {p}")
    try:
        with Image.open(p) as im:
            img = np.asarray(im.convert("RGB") if im.mode not in ("RGB",) else im)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"{p}: not readable as an 8-bit RGB TIFF by Pillow ({exc}); multi-band or 16/32-bit rasters need rasterio"
        ) from None
    if img.ndim != 3 or img.shape[2] != 3:
        raise DataError(f"{p}: expected 3 bands, got shape {img.shape}")
    return img, np.asarray(img.any(axis=2))


def pixel_patches(image: np.ndarray, window: int = 3) -> np.ndarray:
    """Per-pixel ``window × window`` neighbourhoods: ``(H, W, C)`` → ``(H*W, window*window*C)``.

    Edges are padded by reflection. Layout is pixel-major then channel, as in Statlog.
    """
    if image.ndim != 3:
        raise ValueError(f"pixel_patches needs an (H, W, C) image, got shape {image.shape}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    h, w, c = image.shape
    r = window // 2
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect")
    shifts = [padded[i : i + h, j : j + w] for i in range(window) for j in range(window)]  # each (H, W, C)
    return np.stack(shifts, axis=2).reshape(h * w, window * window * c)
