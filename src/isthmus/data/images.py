"""Image folders in the torchvision ``ImageFolder`` layout: ``root/<class_name>/<image file>``.

Read with Pillow into one ``(N, C, H, W)`` float32 array in ``[0, 1]``, so the same code runs on a
user's own photos and on the test fixtures. Class indices follow the sorted folder names, as in
torchvision, so labels agree with models trained there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from isthmus.data.sources import require_path
from isthmus.data.table import Table
from isthmus.data.validation import DataError

__all__ = ["load_image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _class_files(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names and (file, class index) pairs; hidden files/folders are skipped."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root}: has no class sub-folders; expected the layout "
            f"{root}/<class_name>/<image>.png (one folder per class)"
        )
    items: list[tuple[Path, int]] = []
    for k, name in enumerate(classes):
        files = sorted(
            f
            for f in (root / name).iterdir()
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
        )
        if not files:
            raise DataError(
                f"{root / name}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder"
            )
        items.extend((f, k) for f in files)
    return classes, items


def _normalise_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise DataError(f"load_image_folder: size must be positive, got {size!r}")
    return int(h), int(w)


def _read(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image as (H, W, C) uint8; resized (bilinear) to ``size=(H, W)`` when given."""
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # PIL takes (W, H)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as an image ({exc}); delete or replace the file") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_image_folder(root: str | Path, size: int | tuple[int, int] | None = None, grayscale: bool = False) -> Table:
    """Load ``root/<class>/*.png|jpg|...`` as X ``(N, C, H, W)`` float32 in [0, 1] and y class indices.

    ``size`` (an int or ``(H, W)``) resizes every image; without it all images must already share a
    size. ``grayscale=True`` gives ``C=1``, otherwise images are converted to RGB (``C=3``, alpha
    dropped). ``meta`` holds ``classes`` (index → folder name) and per-row ``files``.
    """
    root = require_path(root, "image folder")
    if not root.is_dir():
        raise DataError(f"{root}: is a file; load_image_folder needs a folder of class sub-folders")
    classes, items = _class_files(root)
    target = _normalise_size(size)
    mode = "L" if grayscale else "RGB"
    first = _read(items[0][0], mode, target)
    X = np.empty((len(items), first.shape[2], first.shape[0], first.shape[1]), dtype=np.float32)  # (N, C, H, W)
    for i, (path, _) in enumerate(items):
        img = first if i == 0 else _read(path, mode, target)
        if img.shape != first.shape:
            raise DataError(
                f"{path}: is {img.shape[1]}x{img.shape[0]} but {items[0][0]} is "
                f"{first.shape[1]}x{first.shape[0]} (width x height); pass size=(H, W) to resize all images"
            )
        X[i] = img.transpose(2, 0, 1)
    X /= 255.0
    y = np.array([k for _, k in items], dtype=np.int64)
    meta = {
        "source": str(root),
        "classes": classes,
        "class_to_idx": {c: k for k, c in enumerate(classes)},
        "files": np.array([str(p) for p, _ in items]),
        "image_shape": X.shape[1:],
    }
    return Table(X, y, meta=meta)
