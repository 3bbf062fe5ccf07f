"""The Server Machine Dataset (SMD; Su et al., KDD 2019): one loader for every recipe and benchmark.

Local copies only (``find_data("smd")``, see ``../shared/data/smd/SOURCE.md``): per machine a
pickle-free ``<name>.npz`` with ``train`` (n, 38) float32, ``test`` (n, 38) float32 and
``test_label`` (n,), plus an optional ``<name>_interpretation_label.txt`` whose lines
``start-end:dim,dim`` name the faulty metrics of each anomaly segment (inclusive end, 1-based
dims; converted here to half-open ``[start, end)`` spans and 0-based channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isthmus.data.validation import DataError

__all__ = ["SMDMachine", "load_smd_machine", "load_smd", "parse_interpretation_labels"]


@dataclass
class SMDMachine:
    name: str
    train: np.ndarray  # (n_train, channels) float32
    test: np.ndarray  # (n_test, channels) float32
    labels: np.ndarray  # (n_test,) int64, 1 = anomalous step
    events: list[tuple[int, int, list[int]]] = field(default_factory=list)  # [start, end) and 0-based channels


def parse_interpretation_labels(text: str) -> list[tuple[int, int, list[int]]]:
    """``"15849-16368:1,9,10"`` lines → ``[(15849, 16369, [0, 8, 9])]`` (half-open span, 0-based channels)."""
    events = []
    for n, line in enumerate(text.split(), 1):
        try:
            span, dims = line.split(":")
            a, b = (int(v) for v in span.split("-"))
            chans = [int(v) - 1 for v in dims.split(",")]
        except ValueError:
            raise DataError(f"interpretation label line {n} {line!r} is not 'start-end:dim,dim,...'") from None
        if b < a or min(chans) < 0:
            raise DataError(
                f"interpretation label line {n} {line!r}: end before start or a dim below 1 (dims are 1-based)"
            )
        events.append((a, b + 1, chans))
    return events


def load_smd_machine(path: str | Path, n_train: int | None = None, n_test: int | None = None) -> SMDMachine:
    """One machine from its ``.npz``; ``n_train``/``n_test`` keep the first steps (events inside the kept test
    steps only)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SMD machine file {path} not found; expected <folder>/smd/machine-X-Y.npz")
    with np.load(path, allow_pickle=False) as d:
        missing = {"train", "test", "test_label"} - set(d.files)
        if missing:
            raise DataError(f"{path} lacks arrays {sorted(missing)}; an SMD npz holds train, test and test_label")
        train = np.asarray(d["train"][:n_train], dtype=np.float32)
        test = np.asarray(d["test"][:n_test], dtype=np.float32)
        labels = np.asarray(d["test_label"][: len(test)], dtype=np.int64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise DataError(f"{path}: train {train.shape} and test {test.shape} must be 2-D with the same channel count")
    if len(labels) != len(test):
        raise DataError(f"{path}: {len(labels)} test labels for {len(test)} test steps")
    interp = path.with_name(path.stem + "_interpretation_label.txt")
    events = parse_interpretation_labels(interp.read_text()) if interp.is_file() else []
    events = [(a, b, ch) for a, b, ch in events if b <= len(test)]
    return SMDMachine(path.stem, train, test, labels, events)


def load_smd(
    names: list[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    root: str | Path | None = None,
) -> list[SMDMachine]:
    """Every machine (sorted by name) or the named ones, from ``root`` or ``find_data("smd")``.

    Raises :class:`~isthmus.data.paths.DataNotFoundError` when the folder is absent and
    :class:`DataError` when a named machine is missing or the folder holds none.
    """
    from isthmus.data.paths import find_data

    folder = Path(root) if root is not None else find_data("smd")
    paths = sorted(folder.glob("machine-*.npz")) if names is None else [folder / f"{n}.npz" for n in names]
    if not paths:
        raise DataError(f"no machine-*.npz files in {folder}")
    return [load_smd_machine(p, n_train, n_test) for p in paths]
