"""Finding local copies of real data sets without ever downloading them.

isthmus never fetches data at run time. A user points ``$ISTHMUS_DATA`` at a folder holding one
sub-folder per data set (``$ISTHMUS_DATA/mnist/t10k-images-idx3-ubyte.gz`` ...); developers of this
repo also get the shared copy at ``../shared/data`` next to the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from isthmus.data.idx import load_mnist_idx
from isthmus.data.table import Table
from isthmus.data.validation import DataError

__all__ = ["DataNotFoundError", "find_data", "data_search_paths", "load_mnist"]

ENV_VAR = "ISTHMUS_DATA"


class DataNotFoundError(DataError):
    """A named data set is in none of the places isthmus looks; the message lists them."""


def _repo_root() -> Path | None:
    """The nearest folder above this file holding a ``pyproject.toml`` (None once installed)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def data_search_paths() -> list[Path]:
    """Folders searched for data sets, in order: ``$ISTHMUS_DATA``, ``./../shared/data``, and
    ``<repo root>/../shared/data`` (duplicates removed)."""
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.cwd() / ".." / "shared" / "data")
    repo = _repo_root()
    if repo is not None:
        roots.append(repo / ".." / "shared" / "data")
    unique: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r not in unique:
            unique.append(r)
    return unique


def find_data(name: str) -> Path:
    """The folder of the local data set ``name`` (e.g. ``"mnist"``), or :class:`DataNotFoundError`."""
    roots = data_search_paths()
    for root in roots:
        if (root / name).is_dir():
            return root / name
    looked = "\n  ".join(str(r / name) for r in roots)
    env = os.environ.get(ENV_VAR)
    env_note = f"${ENV_VAR} is {env!r}" if env else f"${ENV_VAR} is not set"
    raise DataNotFoundError(
        f"data set {name!r} not found; looked in:\n  {looked}\n({env_note}). isthmus never downloads "
        f"data: put the files in <folder>/{name}/ and run `export {ENV_VAR}=<folder>`, "
        "or pass the path to the loader directly."
    )


def load_mnist(root: str | Path | None = None, split: str = "test") -> Table:
    """MNIST from LeCun idx files in ``root`` (default: :func:`find_data` ``("mnist")``).

    ``split`` is ``"test"`` (``t10k-*``, 10,000 images) or ``"train"`` (``train-*``); files may be
    gzipped or plain. Returns X ``(N, 1, 28, 28)`` in [0, 1] and y digit labels.
    """
    if split not in ("test", "train"):
        raise DataError(f"load_mnist: split must be 'test' or 'train', got {split!r}")
    folder = Path(root) if root is not None else find_data("mnist")
    prefix = "t10k" if split == "test" else "train"
    found = {}
    for kind, dims in (("images", 3), ("labels", 1)):
        candidates = [folder / f"{prefix}-{kind}-idx{dims}-ubyte{ext}" for ext in (".gz", "")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise DataNotFoundError(
                f"{folder}: no MNIST {split} {kind} file; expected {candidates[0].name} or {candidates[1].name}"
            )
        found[kind] = hit
    table = load_mnist_idx(found["images"], found["labels"])
    table.meta.update(name="mnist", split=split, classes=list(range(10)))
    return table
