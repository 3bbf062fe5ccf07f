"""LeCun's idx format (MNIST, Fashion-MNIST, EMNIST), plain or gzipped.

Layout: two zero bytes, a type code byte, a byte with the number of dimensions, then one big-endian
uint32 per dimension, then the values in C order. We check every part of that header because
copies of MNIST found online are often HTML pages or truncated downloads renamed to ``.gz``.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from isthmus.data.sources import require_path
from isthmus.data.table import Table
from isthmus.data.validation import DataError

__all__ = ["read_idx", "write_idx", "load_mnist_idx"]

# idx type code → big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(p: Path) -> bytes:
    raw = p.read_bytes()
    if raw[:2] == _GZIP_MAGIC:  # detect by content, not by name: some '.gz' copies are not gzipped
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{p}: gzip data is truncated or corrupt ({exc}); download the file again") from None
    if p.suffix == ".gz":
        raise DataError(
            f"{p}: named .gz but is not gzip data (starts with {raw[:16]!r}); "
            "it may be an HTML error page saved by a failed download"
        )
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (``.gz`` or plain) into a native-endian numpy array, checking the header."""
    p = require_path(path, "idx file")
    raw = _read_bytes(p)
    if len(raw) < 4:
        raise DataError(f"{p}: only {len(raw)} bytes; an idx file starts with a 4-byte magic number")
    code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        magic = int.from_bytes(raw[:4], "big")
        raise DataError(
            f"{p}: bad idx magic number 0x{magic:08x}; expected 0x0000TTDD (TT a type code in "
            f"{[hex(c) for c in _IDX_DTYPES]}, DD the number of dimensions), e.g. 0x00000803 "
            "for MNIST images; this is not an idx file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{p}: truncated idx header: {ndim} dimensions need {header} bytes, file has {len(raw)}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    need = int(np.prod(dims)) * dtype.itemsize
    have = len(raw) - header
    if have != need:
        what = "truncated" if have < need else "longer than its header says"
        raise DataError(
            f"{p}: idx data is {what}: dims {dims} of {dtype.name} need {need} bytes after the "
            f"header, found {have}; the file is damaged or not the one you meant"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an idx file (gzipped when ``compress`` or the name ends with ``.gz``)."""
    arr = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    key = arr.dtype.newbyteorder("=")
    if key not in codes:
        raise DataError(f"write_idx: dtype {arr.dtype} has no idx type code; use one of {list(codes)}")
    header = bytes([0, 0, codes[key], arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.dtype(_IDX_DTYPES[codes[key]])).tobytes()
    path = Path(path)
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)


def load_mnist_idx(images_path: str | Path, labels_path: str | Path | None = None) -> Table:
    """MNIST-style idx images (and optional labels) as X ``(N, 1, H, W)`` float32 in [0, 1], y int64.

    The images file must hold a 3-D uint8 array ``(N, H, W)`` (28x28 for MNIST); the labels file a
    1-D array with the same N.
    """
    images = read_idx(images_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected an idx image file of uint8 (N, H, W), got {images.dtype} "
            f"with dims {images.shape}; did you swap the images and labels files?"
        )
    X = images[:, None, :, :].astype(np.float32) / 255.0  # (N, 1, H, W)
    meta = {"source": str(images_path), "image_shape": X.shape[1:]}
    y = None
    if labels_path is not None:
        labels = read_idx(labels_path)
        if labels.ndim != 1:
            raise DataError(f"{labels_path}: expected a 1-D idx label file, got dims {labels.shape}")
        if len(labels) != len(images):
            raise DataError(
                f"{labels_path}: has {len(labels)} labels but {images_path} has {len(images)} "
                "images; they must come from the same split"
            )
        y = labels.astype(np.int64)
        meta["labels_source"] = str(labels_path)
        meta["classes"] = list(range(int(y.max()) + 1))  # digits 0-9 for MNIST; idx labels are class ids
    return Table(X, y, meta=meta)
