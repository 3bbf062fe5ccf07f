"""Splits, scalers and sliding windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from isthmus.data import (DataError, IdentityScaler, MinMaxScaler, Scaler, StandardScaler, Table, make_scaler,
                          sliding_windows, train_val_split, window_labels)


# ---- split ---------------------------------------------------------------------------------------
def test_split_indices_sizes_disjoint_and_seeded():
    tr, va = train_val_split(100, val_fraction=0.25, seed=7)
    assert len(tr) == 75 and len(va) == 25
    assert not set(tr) & set(va) and sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    tr2, va2 = train_val_split(100, val_fraction=0.25, seed=7)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, train_val_split(100, val_fraction=0.25, seed=8)[1])
    assert len(train_val_split(10, val_fraction=0.01)[1]) == 1      # never an empty side


def test_split_table_keeps_rows_labels_and_meta():
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    t = Table(X, y=np.arange(20) % 2, meta={"entity": np.arange(20) * 10, "name": "toy"})
    train, val = train_val_split(t, 0.3, seed=1)
    assert len(train) == 14 and len(val) == 6
    for part in (train, val):                                   # rows stay aligned with y and entity
        np.testing.assert_array_equal(part.X[:, 0] / 2, part.meta["entity"] / 10)
        np.testing.assert_array_equal(part.y, (part.X[:, 0] / 2).astype(int) % 2)
    assert val.meta["split"] == "val" and train.meta["name"] == "toy"


def test_stratified_split_keeps_class_proportions():
    y = np.array([0] * 80 + [1] * 20)
    t = Table(np.zeros((100, 1)), y=y)
    _, val = train_val_split(t, 0.2, seed=0, stratify=True)
    assert np.bincount(val.y).tolist() == [16, 4]
    _, va = train_val_split(100, 0.2, seed=0, stratify=y)
    assert np.bincount(y[va]).tolist() == [16, 4]


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(frac):
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        train_val_split(10, val_fraction=frac)


def test_split_other_errors():
    with pytest.raises(DataError, match="at least 2"):
        train_val_split(1)
    with pytest.raises(DataError, match="no labels"):
        train_val_split(Table(np.zeros((4, 1))), stratify=True)
    with pytest.raises(DataError, match="3 labels for 4 samples"):
        train_val_split(4, stratify=[0, 1, 0])


# ---- scalers -------------------------------------------------------------------------------------
def _train_val():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, size=(200, 3)).astype(np.float32)
    train[:, 2] = 4.0                                            # a constant column
    val = rng.normal(50.0, 9.0, size=(40, 3)).astype(np.float32)  # deliberately shifted
    return train, val


def test_standard_scaler_uses_training_statistics_only():
    train, val = _train_val()
    s = StandardScaler().fit(train)
    z = s.transform(val)
    np.testing.assert_allclose(z[:, :2], (val[:, :2] - train[:, :2].mean(0)) / train[:, :2].std(0), rtol=1e-4)
    assert abs(z[:, 0].mean()) > 5                               # val was not re-centred on itself
    zt = s.transform(train)
    np.testing.assert_allclose(zt[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(zt[:, :2].std(0), 1, atol=1e-4)
    assert np.isfinite(zt).all() and (zt[:, 2] == 0).all()       # constant column: no division by zero
    np.testing.assert_allclose(s.inverse_transform(z), val, rtol=1e-5)
    assert z.dtype == np.float32


def test_minmax_scaler_range_constant_and_torch():
    train, val = _train_val()
    s = MinMaxScaler(feature_range=(-1, 1)).fit(train)
    out = s.transform(train)
    np.testing.assert_allclose(out[:, :2].min(0), -1, atol=1e-6)
    np.testing.assert_allclose(out[:, :2].max(0), 1, atol=1e-6)
    assert (out[:, 2] == -1).all()                               # constant → low end of the range
    assert s.transform(val)[:, 0].min() > 1                      # val beyond the train max stays beyond
    t = s.transform(torch.from_numpy(val))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), s.transform(val), rtol=1e-6)
    np.testing.assert_allclose(s.inverse_transform(t).numpy(), val, rtol=1e-5)


@pytest.mark.parametrize("name", ["standard", "minmax", "none"])
def test_scaler_json_round_trip(name):
    train, val = _train_val()
    s = make_scaler(name).fit(train)
    data = json.loads(json.dumps(s.to_dict()))                  # must be plain JSON
    back = Scaler.from_dict(data)
    assert type(back) is type(s)
    np.testing.assert_array_equal(back.transform(val), s.transform(val))
    images = np.random.default_rng(1).random((10, 1, 4, 4))       # per-pixel statistics keep their shape
    img_back = Scaler.from_dict(json.loads(json.dumps(make_scaler(name).fit(images).to_dict())))
    assert img_back.transform(images).shape == (10, 1, 4, 4)


def test_scaler_errors():
    train, _ = _train_val()
    with pytest.raises(DataError, match="before fit"):
        StandardScaler().transform(train)
    with pytest.raises(DataError, match="before fit"):
        MinMaxScaler().inverse_transform(train)
    s = StandardScaler().fit(train)
    with pytest.raises(DataError, match=r"wrong shape for the model: expected \(3,\).*got \(2,\)"):
        s.transform(train[:, :2])
    with pytest.raises(DataError, match="unknown scaler 'robust'"):
        make_scaler("robust")
    with pytest.raises(DataError, match="low < high"):
        MinMaxScaler((1, 1))
    with pytest.raises(DataError, match="NaN"):
        StandardScaler().fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(DataError, match="kind 'nope'"):
        Scaler.from_dict({"kind": "nope"})
    np.testing.assert_array_equal(IdentityScaler().transform(train), train)   # nothing to learn
    with pytest.raises(DataError, match="wrong shape"):
        IdentityScaler().fit(train).transform(train[:, :1])


# ---- windows -------------------------------------------------------------------------------------
def test_sliding_windows_numpy_and_torch():
    T, C = 10, 3
    X = np.arange(T * C, dtype=np.float32).reshape(T, C)
    W = sliding_windows(X, window=4, stride=3)
    assert W.shape == (3, 4, 3)                                  # (10-4)//3 + 1
    np.testing.assert_array_equal(W[1], X[3:7])
    assert W.flags["C_CONTIGUOUS"] and not np.shares_memory(W, X)  # a copy, not an aliasing view
    Wt = sliding_windows(torch.from_numpy(X), window=4, stride=3)
    assert isinstance(Wt, torch.Tensor)
    np.testing.assert_array_equal(Wt.numpy(), W)
    assert sliding_windows(np.arange(5.0), 5).shape == (1, 5, 1)


def test_sliding_window_errors_and_labels():
    with pytest.raises(DataError, match=r"window=11 is longer than the series \(10 time steps\)"):
        sliding_windows(np.zeros((10, 2)), 11)
    with pytest.raises(DataError, match="stride must be a positive integer"):
        sliding_windows(np.zeros((10, 2)), 3, stride=0)
    with pytest.raises(DataError, match=r"\(T, C\)"):
        sliding_windows(np.zeros((2, 10, 2)), 3)
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 0])
    assert window_labels(labels, 3).tolist() == [0, 1, 1, 1, 0, 0]  # windows holding step 3
    assert window_labels(labels, 3, how="last").tolist() == [0, 1, 0, 0, 0, 0]
    assert window_labels(labels, 3, stride=2).tolist() == [0, 1, 0]
