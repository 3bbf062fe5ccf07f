"""Loaders for arrays and tabular files, and :func:`load_table`, which picks a loader by path.

Every loader returns a validated :class:`~isthmus.data.table.Table` and raises
:class:`~isthmus.data.validation.DataError` naming the file (and column/row) when input is bad.
NumPy files are always read with ``allow_pickle=False``: a pickle in a data file can run code.
"""

from __future__ import annotations

import gzip
import re
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isthmus.data.table import Table
from isthmus.data.validation import DataError, as_numpy, validate_array

__all__ = ["from_arrays", "load_csv", "load_parquet", "load_npy", "load_npz", "load_table", "require_path"]

# Names tried, in order, when load_npz is not told which array holds X / y.
_X_KEYS = ("X", "x", "data", "features")
_Y_KEYS = ("y", "labels", "label", "target", "targets")
_FILE_SUFFIXES = (".csv", ".tsv", ".gz", ".parquet", ".pq", ".npy", ".npz", ".idx")


def require_path(path: str | Path, what: str = "file") -> Path:
    """``Path(path)`` if it exists, else a :class:`DataError` naming the absolute path."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"{what} not found: {p.resolve()}; check the path (relative paths start at "
            f"the current directory {Path.cwd()})"
        )
    return p


def _labels(y: Any, source: str) -> tuple[np.ndarray, list | None]:
    """Labels as numbers; text labels become class indices with the names returned as classes."""
    arr = as_numpy(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]  # column-vector labels, as MATLAB/.mat exports store them
    if arr.dtype.kind in "OUS":
        codes, classes = pd.factorize(pd.Series(arr.reshape(-1)), sort=True)
        if (codes < 0).any():
            row = int(np.argmax(codes < 0))
            raise DataError(f"{source}: missing label at row {row}; drop unlabelled rows or fill them")
        return codes.astype(np.int64), [str(c) for c in classes]
    arr = validate_array(arr, f"{source} labels")
    if arr.dtype.kind == "f" and np.all(arr == np.round(arr)) and arr.ndim == 1:
        return arr.astype(np.int64), None  # integral floats (common in .mat/.csv) are class ids
    return arr, None


def from_arrays(X: Any, y: Any = None, feature_names: Sequence[str] | None = None, name: str = "arrays") -> Table:
    """A Table from in-memory numpy arrays, torch tensors or nested lists (validated)."""
    arr = validate_array(X, name, feature_names=feature_names)
    meta: dict[str, Any] = {"source": name}
    labels = None
    if y is not None:
        labels, classes = _labels(y, name)
        if classes is not None:
            meta["classes"] = classes
    return Table(arr, labels, list(feature_names) if feature_names is not None else None, meta)


def _non_numeric_message(df: pd.DataFrame, col: str, source: str, line_offset: int) -> str:
    coerced = pd.to_numeric(df[col], errors="coerce")
    bad = coerced.isna() & df[col].notna()
    row = int(np.argmax(bad.to_numpy())) if bad.any() else 0
    where = f"row {row}" + (f" (line {row + line_offset} of the file)" if line_offset else "")
    return (
        f"{source}: column '{col}' is not numeric (first non-numeric value {df[col].iloc[row]!r} at "
        f"{where}); leave it out with columns=[...], or pass it as label_column= or entity_column="
    )


def _frame_to_table(
    df: pd.DataFrame,
    source: str,
    columns: Sequence[str] | None,
    label_column: str | None,
    entity_column: str | None,
    line_offset: int = 0,
) -> Table:
    """Shared by CSV and Parquet: pick feature columns, check they are numeric, split off y/entity."""
    if df.shape[0] == 0:
        raise DataError(f"{source}: has a header but no rows of data")
    wanted = [c for c in (label_column, entity_column) if c is not None] + list(columns or [])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(f"{source}: no column(s) {missing}; the file has {list(map(str, df.columns))}")
    special = {label_column, entity_column}
    features = list(columns) if columns is not None else [c for c in df.columns if c not in special]
    if not features:
        raise DataError(f"{source}: no feature columns left after removing label/entity columns")
    for col in features:
        if not (pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col])):
            raise DataError(_non_numeric_message(df, col, source, line_offset))
    names = [str(c) for c in features]
    X = validate_array(df[features].to_numpy(dtype=np.float64), source, feature_names=names)
    meta: dict[str, Any] = {"source": source}
    y = None
    if label_column is not None:
        y, classes = _labels(df[label_column].to_numpy(), f"{source} column '{label_column}'")
        meta["label_column"] = label_column
        if classes is not None:
            meta["classes"] = classes
    if entity_column is not None:
        meta["entity"] = df[entity_column].to_numpy()
        meta["entity_column"] = entity_column
    return Table(X, y, names, meta)


def load_csv(
    path: str | Path,
    columns: Sequence[str] | None = None,
    label_column: str | None = None,
    entity_column: str | None = None,
    **read_kw: Any,
) -> Table:
    """Read a CSV with a header row. ``columns`` picks features (default: every other column);
    ``label_column`` becomes ``y``; ``entity_column`` (host, machine id...) is kept in
    ``meta['entity']``. ``read_kw`` goes to :func:`pandas.read_csv` (e.g. ``sep="\\t"``)."""
    p = require_path(path, "CSV file")
    try:
        df = pd.read_csv(p, **read_kw)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: the file is empty; it needs a header row and at least one data row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{p}: not readable as CSV ({exc}); check the delimiter (sep=) and "
            "that every row has the same number of fields"
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # a .gz name on a broken or non-gzip file
        raise DataError(
            f"{p}: not readable as gzip-compressed CSV ({type(exc).__name__}: {exc}); the file "
            "may be truncated, or not gzip data despite its name"
        ) from None
    df = _drop_index_column(df, str(p), columns)
    # +2: row 0 of the frame is line 2 of the file, after the header line.
    return _frame_to_table(df, str(p), columns, label_column, entity_column, line_offset=2)


def _drop_index_column(df: pd.DataFrame, source: str, columns: Sequence[str] | None) -> pd.DataFrame:
    """Drop the row index ``DataFrame.to_csv`` writes by default (a first column with an empty header,
    which pandas names ``Unnamed: 0``). As a feature it is the row number: a model learns it, and new
    rows (numbered higher) all look anomalous. Kept when ``columns=`` names it explicitly."""
    first = str(df.columns[0]) if len(df.columns) else ""
    if first != "Unnamed: 0" or (columns is not None and "Unnamed: 0" in columns):
        return df
    col = df.iloc[:, 0]
    if not (pd.api.types.is_integer_dtype(col) and col.is_unique):  # an index holds unique integers
        return df
    warnings.warn(
        f"{source}: the first column has no header, so it is taken as the row index that "
        "DataFrame.to_csv writes by default and left out of the features (write files with "
        "to_csv(index=False), or pass columns=[...] naming 'Unnamed: 0' to keep it)",
        stacklevel=3,
    )
    return df.drop(columns=df.columns[0])


def load_parquet(
    path: str | Path,
    columns: Sequence[str] | None = None,
    label_column: str | None = None,
    entity_column: str | None = None,
) -> Table:
    """Read a Parquet file (pyarrow); arguments as in :func:`load_csv`."""
    p = require_path(path, "Parquet file")
    try:
        df = pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{p}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    return _frame_to_table(df, str(p), columns, label_column, entity_column)


def _np_load(p: Path, kind: str) -> Any:
    """``np.load`` without pickles, after checking the magic bytes (np.load would otherwise try to
    unpickle any unknown file and report a misleading 'pickled data' error)."""
    magic = {"npy": b"\x93NUMPY", "npz": b"PK"}[kind]
    with open(p, "rb") as fh:
        head = fh.read(len(magic))
    if head != magic:
        raise DataError(
            f"{p}: not a .{kind} file (it does not start with the {kind} signature); "
            f"check the file, or use the loader for its real format"
        )
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(
                f"{p}: holds Python objects (pickled); isthmus never unpickles data files. "
                "Re-save it with numeric arrays only (np.save(path, arr.astype(float)))"
            ) from None
        raise DataError(f"{p}: not a readable NumPy file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: not a readable NumPy file; it may be truncated ({exc})") from None


def load_npy(path: str | Path) -> Table:
    """Read a ``.npy`` array; a 1-D array is one feature, read as ``(N, 1)``."""
    p = require_path(path, "NumPy file")
    arr = _np_load(p, "npy")
    if arr.ndim == 1:
        arr = arr[:, None]  # a single series/feature: keep the sample axis first
    return Table(validate_array(arr, str(p)), meta={"source": str(p)})


def _pick_key(keys: list[str], key: str | None, defaults: Sequence[str], p: Path, role: str) -> str | None:
    if key is not None:
        if key not in keys:
            raise DataError(f"{p}: no array named {key!r}; it holds {keys}")
        return key
    found = [k for k in defaults if k in keys]
    if found:
        return found[0]
    if role == "X" and len(keys) == 1:
        return keys[0]
    if role == "X":
        raise DataError(f"{p}: holds arrays {keys}; say which is the data with x_key=")
    return None


def load_npz(path: str | Path, x_key: str | None = None, y_key: str | None = None) -> Table:
    """Read a ``.npz`` archive. ``x_key`` defaults to the only array or one named X/x/data/features;
    ``y_key`` defaults to y/labels/label/target(s) when present. Other arrays are ignored."""
    p = require_path(path, "NumPy archive")
    with _np_load(p, "npz") as archive:
        keys = list(archive.files)
        xk = _pick_key(keys, x_key, _X_KEYS, p, "X")
        yk = _pick_key(keys, y_key, _Y_KEYS, p, "y")
        assert xk is not None  # _pick_key raises rather than return None for X
        X, y = _np_load_member(archive, xk, p), (None if yk is None else _np_load_member(archive, yk, p))
    X = X[:, None] if X.ndim == 1 else X
    table = from_arrays(X, None, name=f"{p}[{xk}]")
    if y is not None:
        labels, classes = _labels(y, f"{p}[{yk}]")
        if len(labels) != len(X):
            raise DataError(
                f"{p}: {xk!r} has {len(X)} rows but {yk!r} has {len(labels)}; pass the "
                "matching arrays with x_key= and y_key="
            )
        table.y = labels
        if classes is not None:
            table.meta["classes"] = classes
    table.meta.update(source=str(p), x_key=xk, y_key=yk)
    return table


def _np_load_member(archive: Any, key: str, p: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        raise DataError(f"{p}[{key}]: holds Python objects (pickled), which isthmus never loads ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # a truncated or corrupt member
        raise DataError(f"{p}[{key}]: could not be read; the archive may be truncated ({exc})") from None


def load_table(path: str | Path, **kw: Any) -> Table:
    """Load any supported source by its path: a folder of class sub-folders (images), ``.csv``,
    ``.tsv``, ``.parquet``/``.pq``, ``.npy``, ``.npz`` or a LeCun idx file (``*-ubyte[.gz]``, ``.idx``).
    Keyword arguments go to the specific loader."""
    from isthmus.data.idx import load_mnist_idx  # late imports: keep this module light to import
    from isthmus.data.images import load_image_folder

    p = require_path(path, "data file or folder")
    if p.is_dir():
        if p.suffix.lower() in _FILE_SUFFIXES:
            raise DataError(
                f"{p} is a folder, but its name ends in {p.suffix!r} like a data file; pass the "
                f"file inside it, or rename the folder if it holds images in class sub-folders"
            )
        return load_image_folder(p, **kw)
    name = p.name.lower()
    # pandas and the idx reader decompress .gz themselves; NumPy and Parquet files are never gzipped.
    stem = name[:-3] if name.endswith(".gz") else name
    if stem.endswith(".csv"):
        return load_csv(p, **kw)
    if stem.endswith(".tsv"):
        return load_csv(p, **{"sep": "\t", **kw})
    if re.search(r"idx\d", stem) or stem.endswith(("ubyte", ".idx")):
        return load_mnist_idx(p, **kw)
    loaders = {".parquet": load_parquet, ".pq": load_parquet, ".npy": load_npy, ".npz": load_npz}
    if p.suffix.lower() in loaders:
        return loaders[p.suffix.lower()](p, **kw)
    raise DataError(
        f"{p}: unknown data format {p.suffix!r}; supported: image folder, .csv, .tsv, "
        ".parquet, .npy, .npz, LeCun idx (*-ubyte[.gz]); or call a specific isthmus.data.load_* loader"
    )
