"""Table, validation and the array/tabular loaders, through real files written in tmp_path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isthmus.data import (DataError, Table, check_feature_count, from_arrays, load_csv, load_npy, load_npz,
                          load_parquet, load_table, validate_array)


# ---- Table ---------------------------------------------------------------------------------------
def test_table_casts_subsets_and_makes_tensors():
    entity = np.array(["a", "b", "c", "d"])
    t = Table(np.arange(8, dtype=np.int64).reshape(4, 2), y=np.array([0, 1, 1, 0]),
              feature_names=["f0", "f1"], meta={"entity": entity, "classes": ["neg", "pos"]})
    assert t.X.dtype == np.float32 and len(t) == 4 and t.n_features == 2
    sub = t.subset([3, 1])
    assert sub.X.tolist() == [[6, 7], [2, 3]] and sub.y.tolist() == [0, 1]
    assert sub.meta["entity"].tolist() == ["d", "b"]       # per-row meta follows the rows
    assert sub.meta["classes"] == ["neg", "pos"]            # table-level meta is copied
    X, y = t.to_tensors()
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    ds = t.as_dataset()
    assert len(ds) == 4 and ds[2][1].item() == 1
    assert len(Table(np.zeros((3, 2))).to_tensors()) == 1


def test_table_rejects_mismatched_labels_and_names():
    with pytest.raises(DataError, match="3 rows but y has 2"):
        Table(np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match="feature names"):
        Table(np.zeros((3, 2)), feature_names=["only_one"])


# ---- validation ----------------------------------------------------------------------------------
def test_validate_nan_names_row_and_column():
    X = np.zeros((20, 3))
    X[12, 1] = np.nan
    with pytest.raises(DataError) as err:
        validate_array(X, "metrics.csv", feature_names=["mem", "cpu_load", "disk"])
    msg = str(err.value)
    assert "metrics.csv" in msg and "row 12" in msg and "'cpu_load'" in msg and "impute or drop" in msg
    kept = validate_array(X, allow_nan=True)
    assert kept.shape == (20, 3) and np.isnan(kept[12, 1]) and np.isnan(kept).sum() == 1


def test_validate_inf_empty_text_complex_ragged():
    with pytest.raises(DataError, match=r"infinite value at row 1, column 0"):
        validate_array(np.array([[1.0], [np.inf]]))
    with pytest.raises(DataError, match=r"inf.*row 0"):
        validate_array(np.array([[np.inf]]), allow_nan=True)  # NaN allowed, inf never
    with pytest.raises(DataError, match="empty"):
        validate_array(np.zeros((0, 4)), "x.npy")
    with pytest.raises(DataError, match="contains text"):
        validate_array(np.array([["a", "b"]]))
    with pytest.raises(DataError, match="complex"):
        validate_array(np.ones((2, 2), dtype=complex))
    with pytest.raises(DataError, match=r"row 0 has 3, row 2 has 2"):
        validate_array([[1, 2, 3], [4, 5, 6], [7, 8]], "rows")
    with pytest.raises(DataError, match=r"non-numeric value 'x' at row 1"):
        validate_array(np.array([1.0, "x"], dtype=object))


def test_check_feature_count_explains_shape():
    check_feature_count(np.zeros((5, 64)), 64)
    check_feature_count(torch.zeros(5, 1, 28, 28), (1, 28, 28))
    with pytest.raises(DataError, match=r"wrong shape for the model: expected \(64,\).*got \(10,\)"):
        check_feature_count(np.zeros((5, 10)), 64, "test.csv")
    with pytest.raises(DataError, match="flatten"):
        check_feature_count(np.zeros((5, 8, 8)), 64)


# ---- arrays --------------------------------------------------------------------------------------
def test_from_arrays_numpy_torch_and_text_labels():
    t = from_arrays(torch.ones(4, 3), ["cat", "dog", "cat", "ant"])
    assert t.X.shape == (4, 3) and t.meta["classes"] == ["ant", "cat", "dog"]
    assert t.y.tolist() == [1, 2, 1, 0]
    assert from_arrays(np.ones((2, 2)), np.array([0.0, 1.0])).y.dtype == np.int64
    assert from_arrays(np.ones((3, 2)), np.array([[0], [1], [1]])).y.tolist() == [0, 1, 1]  # (N, 1) labels
    with pytest.raises(DataError, match="labels.*NaN"):
        from_arrays(np.ones((2, 2)), np.array([0.0, np.nan]))


# ---- CSV / Parquet -------------------------------------------------------------------------------
def _frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "host": [f"h{i % 2}" for i in range(n)],
        "cpu_load": np.linspace(0, 1, n),
        "mem": np.arange(n, dtype=np.int64),
        "label": ["ok", "bad"] * (n // 2),
    })


def test_csv_round_trip_with_label_and_entity(tmp_path):
    df = _frame()
    path = tmp_path / "m.csv"
    df.to_csv(path, index=False)
    t = load_csv(path, label_column="label", entity_column="host")
    assert t.feature_names == ["cpu_load", "mem"]
    np.testing.assert_allclose(t.X, df[["cpu_load", "mem"]].to_numpy(), rtol=1e-6)
    assert t.meta["classes"] == ["bad", "ok"] and t.y.tolist() == [1, 0] * 3
    assert t.meta["entity"].tolist() == df["host"].tolist() and t.meta["source"] == str(path)
    assert load_table(path, columns=["mem"]).X[:, 0].tolist() == list(range(6))


def test_csv_errors_name_column_row_and_fix(tmp_path):
    path = tmp_path / "m.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_csv(path, label_column="label")  # 'host' is text and not excluded
    assert "'host'" in str(err.value) and "'h0'" in str(err.value) and "entity_column" in str(err.value)
    df = _frame()
    df.loc[3, "cpu_load"] = np.nan
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"m\.csv.*first NaN at row 3, column 'cpu_load'"):
        load_csv(path, label_column="label", entity_column="host")
    with pytest.raises(DataError, match=r"no column\(s\) \['nope'\]"):
        load_csv(path, columns=["nope"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_csv(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="no rows"):
        load_csv(tmp_path / "header.csv")
    with pytest.raises(DataError, match="not found: .*missing.csv"):
        load_csv(tmp_path / "missing.csv")


def test_csv_mixed_column_reports_first_bad_line(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("a,b\n1,2\n3,oops\n5,6\n")
    with pytest.raises(DataError, match=r"column 'b'.*'oops' at row 1 \(line 3 of the file\)"):
        load_csv(path)


def test_parquet_round_trip_and_string_column(tmp_path):
    path = tmp_path / "m.parquet"
    _frame().to_parquet(path)
    t = load_table(path, label_column="label", entity_column="host")
    assert t.X.shape == (6, 2) and t.meta["entity"][1] == "h1"
    with pytest.raises(DataError, match="column 'label' is not numeric"):
        load_parquet(path, entity_column="host")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="bad.parquet: not a readable Parquet"):
        load_parquet(tmp_path / "bad.parquet")


# ---- npy / npz -----------------------------------------------------------------------------------
def test_npy_and_npz_round_trip(tmp_path):
    X = np.random.default_rng(0).normal(size=(10, 4))
    np.save(tmp_path / "x.npy", X)
    np.testing.assert_allclose(load_table(tmp_path / "x.npy").X, X.astype(np.float32))
    assert load_npy(tmp_path / "x.npy").X.shape == (10, 4)
    np.save(tmp_path / "series.npy", np.arange(5.0))
    assert load_npy(tmp_path / "series.npy").X.shape == (5, 1)
    np.savez(tmp_path / "d.npz", train=X, test=X[:3], test_label=np.array([0, 1, 0]))
    t = load_npz(tmp_path / "d.npz", x_key="test", y_key="test_label")
    assert t.X.shape == (3, 4) and t.y.tolist() == [0, 1, 0]
    np.savez(tmp_path / "xy.npz", X=X, y=np.arange(10))
    assert load_table(tmp_path / "xy.npz").y.tolist() == list(range(10))  # X / y found by name


def test_npz_and_npy_errors(tmp_path):
    X = np.zeros((4, 2))
    np.savez(tmp_path / "d.npz", a=X, b=X)
    with pytest.raises(DataError, match=r"holds arrays \['a', 'b'\]; say which.*x_key"):
        load_npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"no array named 'c'"):
        load_npz(tmp_path / "d.npz", x_key="c")
    np.savez(tmp_path / "len.npz", X=X, y=np.arange(3))
    with pytest.raises(DataError, match="4 rows but 'y' has 3"):
        load_npz(tmp_path / "len.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled"):
        load_npy(tmp_path / "obj.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(DataError, match="not a .npy file"):
        load_npy(tmp_path / "text.npy")
    full = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="truncated"):
        load_npz(tmp_path / "cut.npz", x_key="a")
    (tmp_path / "x.weird").write_text("1")
    with pytest.raises(DataError, match="unknown data format '.weird'"):
        load_table(tmp_path / "x.weird")
