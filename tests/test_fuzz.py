"""Property-based fuzzing of every boundary that reads user files (issue 11 campaign).

Each property feeds generated garbage (or a good file damaged at random) to one reader and accepts
only two outcomes: a result that is right, or *our own* clear error (ConfigError, DataError,
CheckpointError). Any other exception is a traceback a user would see; a wrong result that loads is
a silent failure. Example counts are bounded (and the search derandomized) so this runs in
``make test`` in seconds and never flakes; raise ISTHMUS_FUZZ_EXAMPLES for a longer hunt.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isthmus.config import ConfigError
from isthmus.data import DataError, load_table
from isthmus.io import CheckpointError

settings.register_profile(
    "isthmus", max_examples=int(os.environ.get("ISTHMUS_FUZZ_EXAMPLES", "40")), deadline=None,
    derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("isthmus")

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_subnormal=False) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                           max_leaves=8)


def _fresh(tmp_path: Path, name: str) -> Path:
    """A new empty folder per example (tmp_path is shared by all examples of one test)."""
    i = 0
    while (tmp_path / f"{name}{i}").exists():
        i += 1
    (tmp_path / f"{name}{i}").mkdir()
    return tmp_path / f"{name}{i}"


# ---- config parsing ------------------------------------------------------------------------------------
RUN_KEYS = {"data": ["source", "columns", "label_column", "val_fraction", "scaler", "seed", "limit"],
            "model": ["kind", "latent_dim", "hidden", "activation", "bottleneck", "bottleneck_config", "objective"],
            "trainer": ["epochs", "batch_size", "lr", "optimizer", "betas", "grad_clip", "device", "progress"]}
sections = st.sampled_from(sorted(RUN_KEYS)).flatmap(
    lambda sec: st.tuples(st.just(sec), st.dictionaries(st.sampled_from(RUN_KEYS[sec] + ["bogus"]), json_values,
                                                        max_size=3)))


@given(st.lists(sections, max_size=3), st.one_of(st.none(), json_values))
def test_run_config_from_any_json_is_valid_or_a_config_error(parts, out_dir):
    from isthmus.tasks.autoencoding import RunConfig, build_model

    data = {sec: body for sec, body in parts}
    if out_dir is not None:
        data["out_dir"] = out_dir
    try:
        cfg = RunConfig.from_dict(data)
    except ConfigError:
        return
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg  # whatever loads round-trips
    try:  # a config that validates must build a model or say why not (bottleneck name, sizes)
        build_model(cfg.model, (6,))
    except ConfigError:
        pass


@given(st.text(max_size=200))
def test_yaml_config_file_of_any_text(tmp_path, text):
    from isthmus.tasks.autoencoding import RunConfig

    path = _fresh(tmp_path, "c") / "c.yaml"
    path.write_text(text)
    try:
        RunConfig.load(path)
    except ConfigError:
        pass


@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=20), max_size=4))
def test_cli_overrides_of_any_text(overrides):
    from isthmus.tasks.autoencoding import RunConfig

    try:
        RunConfig().with_overrides(overrides)
    except ConfigError:
        pass


# ---- data loaders ----------------------------------------------------------------------------------------
SUFFIXES = [".csv", ".tsv", ".csv.gz", ".parquet", ".npy", ".npz", "-idx3-ubyte", "-idx1-ubyte.gz"]
MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK\x03\x04", ".parquet": b"PAR1", ".csv.gz": b"\x1f\x8b",
         "-idx3-ubyte": b"\x00\x00\x08\x03", "-idx1-ubyte.gz": b"\x1f\x8b"}


@given(st.sampled_from(SUFFIXES), st.binary(max_size=300), st.booleans())
def test_any_bytes_as_a_data_file(tmp_path, suffix, payload, with_magic):
    path = _fresh(tmp_path, "f") / f"data{suffix}"
    path.write_bytes((MAGIC.get(suffix, b"") if with_magic else b"") + payload)
    try:
        table = load_table(path)
    except DataError:
        return
    assert np.isfinite(table.X).all() and len(table.X) > 0  # whatever loads is validated


cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32, allow_subnormal=False), st.integers(-5, 5),
                  st.sampled_from(["", "x", "1e3", "nan", " 2", "1,5"]))


@given(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=6), st.sampled_from([",", ";", "\t"]),
       st.booleans())
def test_csv_of_any_cells(tmp_path, rows, sep, header):
    import csv

    path = _fresh(tmp_path, "csv") / "t.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter=sep)
        if header:
            w.writerow([f"c{i}" for i in range(max((len(r) for r in rows), default=1))])
        w.writerows(rows)
    try:
        table = load_table(path)
    except DataError:
        return
    assert np.isfinite(table.X).all() and table.X.shape[0] == len(rows) - (0 if header else 1)  # no header:
    # the first row names the columns


@given(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3), st.binary(max_size=200))
def test_image_folder_with_broken_images(tmp_path, classes, payload):
    root = _fresh(tmp_path, "img")
    for c in classes:
        (root / c).mkdir(exist_ok=True)
        (root / c / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + payload)
    try:
        load_table(root)
    except DataError:
        pass


# ---- activation-store manifest --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_store(tmp_path_factory):
    from isthmus.interp.store import StoreWriter

    path = tmp_path_factory.mktemp("store") / "s"
    with StoreWriter(path) as w:
        w.add(torch.randn(10, 4))
    return path


@given(json_values, st.sampled_from(["replace", "drop_key", "set_key"]), st.sampled_from(
    ["format", "shards", "d", "row_shape", "dtype", "n_rows", "version"]))
def test_store_manifest_damaged_any_way(tmp_path, good_store, value, how, key):
    import shutil

    from isthmus.interp.store import ActivationStore

    path = _fresh(tmp_path, "st") / "s"
    shutil.copytree(good_store, path)
    manifest = json.loads((path / "manifest.json").read_text())
    if how == "replace":
        manifest = value
    elif how == "drop_key":
        manifest.pop(key, None)
    else:
        manifest[key] = value
    (path / "manifest.json").write_text(json.dumps(manifest))
    try:
        store = ActivationStore(path)
        acts = store.read()
    except CheckpointError:
        return
    assert acts.shape == (len(store), store.d)


# ---- saved models and trainer checkpoints ---------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from isthmus.models import AutoEncoder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m"
    AutoEncoder.mlp(6, latent_dim=2, hidden=[8], bottleneck="gaussian").save_pretrained(path)
    return path


damage = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(["model.safetensors", "config.json"]), st.floats(0, 1, allow_subnormal=False)),
    st.tuples(st.just("flip"), st.sampled_from(["model.safetensors", "config.json"]), st.floats(0, 1, allow_subnormal=False)),
    st.tuples(st.just("delete"), st.sampled_from(["model.safetensors", "config.json"]), st.just(0.0)),
    st.tuples(st.just("foreign"), st.sampled_from(["model.safetensors", "config.json"]), st.just(0.0)),
)


def _damage(file: Path, how: str, where: float) -> None:
    raw = bytearray(file.read_bytes())
    at = min(int(where * len(raw)), len(raw) - 1)
    if how == "truncate":
        file.write_bytes(bytes(raw[:at]))
    elif how == "flip" and raw:
        raw[at] ^= 0xFF
        file.write_bytes(bytes(raw))
    elif how == "delete":
        file.unlink()
    else:  # a file of the same name from somewhere else
        file.write_bytes(json.dumps({"model": "Other", "weights": 1}).encode() if file.suffix == ".json"
                         else struct.pack("<Q", 2) + b"{}")


@given(st.lists(damage, min_size=1, max_size=2))
def test_saved_model_damaged_any_way(tmp_path, saved_model, damages):
    import shutil
    import warnings

    from isthmus.models import AutoEncoder

    path = _fresh(tmp_path, "m") / "m"
    shutil.copytree(saved_model, path)
    for how, name, where in damages:
        if (path / name).exists():
            _damage(path / name, how, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged digest entry warns, then the digest check decides
            back = AutoEncoder.from_pretrained(path)
    except CheckpointError:
        return
    good = AutoEncoder.from_pretrained(saved_model)  # it loaded: then the weights are the right ones
    for (k, a), (_, b) in zip(good.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.fixture(scope="module")
def trainer_checkpoint(tmp_path_factory):
    from isthmus.models import AutoEncoder
    from isthmus.train import Trainer, TrainerConfig

    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = AutoEncoder.mlp(6, latent_dim=2, hidden=[8])
    Trainer(model, TrainerConfig(epochs=1, batch_size=8, progress=False, checkpoint_dir=str(root))).fit(
        torch.randn(16, 6))
    from isthmus.train.checkpoint import find_latest

    return find_latest(root)


@given(st.sampled_from(["model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors",
                        "trainer_state.json"]), st.sampled_from(["truncate", "flip", "delete", "foreign"]),
       st.floats(0, 1, allow_subnormal=False))
def test_trainer_checkpoint_damaged_any_way(tmp_path, trainer_checkpoint, name, how, where):
    import shutil

    from isthmus.train.checkpoint import load_checkpoint

    path = _fresh(tmp_path, "c") / trainer_checkpoint.name
    shutil.copytree(trainer_checkpoint, path)
    _damage(path / name, how, where)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError:
        return
    good = load_checkpoint(trainer_checkpoint)  # it loaded: then every tensor is the saved one
    for part in ("model", "rng_tensors"):
        a, b = getattr(good, part), getattr(ckpt, part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    a, b = good.optimizer["tensors"], ckpt.optimizer["tensors"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
