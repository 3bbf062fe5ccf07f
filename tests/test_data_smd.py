"""The one SMD loader: interpretation labels parse to half-open 0-based spans, truncation keeps events
inside the kept test steps, and malformed files fail with a message that says what is wrong."""

import numpy as np
import pytest

from isthmus.data import DataError
from isthmus.data.smd import load_smd, load_smd_machine, parse_interpretation_labels


def _write(tmp_path, name="machine-9-9", n=50, interp="10-19:1,3\n40-49:2"):
    rng = np.random.default_rng(0)
    y = np.zeros(n, np.uint8)
    y[10:20] = y[40:50] = 1
    np.savez(tmp_path / f"{name}.npz", train=rng.random((n, 4), dtype=np.float32),
             test=rng.random((n, 4), dtype=np.float32), test_label=y)
    if interp is not None:
        (tmp_path / f"{name}_interpretation_label.txt").write_text(interp)
    return tmp_path / f"{name}.npz"


def test_interpretation_labels_are_half_open_and_zero_based():
    assert parse_interpretation_labels("15849-16368:1,9,10\n3-3:38") == [(15849, 16369, [0, 8, 9]), (3, 4, [37])]


@pytest.mark.parametrize("bad", ["10-5:1", "1-2:0", "1-2", "a-b:1"])
def test_bad_interpretation_lines_fail_loudly(bad):
    with pytest.raises(DataError, match="interpretation label line 1"):
        parse_interpretation_labels(bad)


def test_machine_round_trip_and_truncation(tmp_path):
    m = load_smd_machine(_write(tmp_path))
    assert m.name == "machine-9-9" and m.train.dtype == np.float32 and m.labels.dtype == np.int64
    assert m.events == [(10, 20, [0, 2]), (40, 50, [1])]
    assert m.labels[m.events[0][0]:m.events[0][1]].all()  # the span covers exactly the labelled steps
    short = load_smd_machine(tmp_path / "machine-9-9.npz", n_train=30, n_test=45)
    assert short.train.shape == (30, 4) and short.test.shape == (45, 4) and len(short.labels) == 45
    assert short.events == [(10, 20, [0, 2])]  # the second event ends past the kept steps


def test_folder_listing_and_missing_machine(tmp_path):
    _write(tmp_path, "machine-1-1", interp=None)
    _write(tmp_path, "machine-1-0")
    assert [m.name for m in load_smd(root=tmp_path)] == ["machine-1-0", "machine-1-1"]
    assert load_smd(root=tmp_path)[1].events == []
    with pytest.raises(DataError, match="not found"):
        load_smd(["machine-7-7"], root=tmp_path)
    np.savez(tmp_path / "machine-2-2.npz", train=np.zeros((3, 2)), test=np.zeros((3, 2)))
    with pytest.raises(DataError, match="test_label"):
        load_smd(["machine-2-2"], root=tmp_path)
