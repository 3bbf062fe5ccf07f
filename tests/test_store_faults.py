"""Activation store fault injection: damaged or foreign manifests and shards are refused with a message
naming the field, the writer's size and shape checks, an overwrite whose clean-up fails, and the
edges of a read (empty ranges, bfloat16, one-row shapes). Written against the survivors of
`make mutate MODULES=store` (docs/mutation.md).
"""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest
import torch

from isthmus.interp import ActivationStore, StoreWriter
from isthmus.interp.store import StoreExistsError
from isthmus.io import CheckpointError, save_tensors


def _store(path, n=10, d=4, shard_rows=4, dtype="float32", shape=None):
    acts = torch.arange(n * d, dtype=torch.float32).view(n, *(shape or (d,)))
    with StoreWriter(path, shard_rows=shard_rows, dtype=dtype) as w:
        w.add(acts, token_ids=torch.arange(n))
    return acts


def _damage(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


GOOD_SHARDS = [{"file": f"shard_0000{i}.safetensors", "rows": r} for i, r in enumerate([4, 4, 2])]


@pytest.mark.parametrize("changes, what", [
    ({"format": "other"}, "no 'format': 'isthmus.activation_store'"),
    ({"dtype": "float64"}, "dtype 'float64' not in ['bfloat16', 'float16', 'float32']"),
    ({"dtype": [1]}, "dtype [1] not in ['bfloat16', 'float16', 'float32']"),
    ({"row_shape": []}, "row_shape [] is not a list of positive integers"),
    ({"row_shape": [4, 0]}, "row_shape [4, 0] is not a list of positive integers"),
    ({"row_shape": [2.5]}, "row_shape [2.5] is not a list of positive integers"),
    ({"row_shape": "4"}, "row_shape '4' is not a list of positive integers"),
    ({"d": 5}, "d 5 is not the product of row_shape [4]"),
    ({"d": "4"}, "d '4' is not the product of row_shape [4]"),
    ({"shards": {"file": "a"}}, "'shards' is not a list of {file, rows}"),
    ({"shards": [{"file": "a"}]}, "'shards' is not a list of {file, rows}"),
    ({"shards": [{"file": 5, "rows": 3}]}, "'shards' is not a list of {file, rows}"),
    ({"shards": [{"file": "a", "rows": -1}]}, "'shards' is not a list of {file, rows}"),
    ({"shards": [{"file": "a", "rows": 2.0}]}, "'shards' is not a list of {file, rows}"),
    ({"shards": ["a"]}, "'shards' is not a list of {file, rows}"),
    ({"shards": [{"file": "../x", "rows": 10}]}, "shard file '../x' is not a plain file name inside the store"),
    ({"shards": [{"file": "", "rows": 10}]}, "shard file '' is not a plain file name inside the store"),
    ({"shards": [{"file": "..", "rows": 10}]}, "shard file '..' is not a plain file name inside the store"),
    ({"n_rows": 11}, "n_rows 11 is not the sum of the shard rows"),
    ({"n_rows": "10"}, "n_rows '10' is not the sum of the shard rows"),
])
def test_damaged_manifest_names_the_field(tmp_path, changes, what):
    _store(tmp_path / "s")
    _damage(tmp_path / "s", **changes)
    where = tmp_path / "s" / "manifest.json"
    with pytest.raises(CheckpointError) as info:
        ActivationStore(tmp_path / "s")
    assert str(info.value) == f"{where} is not a valid isthmus activation store manifest: {what}"


def test_a_manifest_that_is_not_an_object(tmp_path):
    _store(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="no 'format'"):
        ActivationStore(tmp_path / "s")


def test_missing_folder_or_shards_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{tmp_path} is not an activation store (no manifest.json)")):
        ActivationStore(tmp_path)
    _store(tmp_path / "s", n=20)  # 5 shards
    for i in range(1, 5):
        (tmp_path / "s" / f"shard_0000{i}.safetensors").unlink()
    missing = [f"shard_0000{i}.safetensors" for i in (1, 2, 3)]  # the first three of four
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{tmp_path / 's'}: shard file(s) {missing} are missing")):
        ActivationStore(tmp_path / "s")


def test_an_empty_shard_listed_in_the_manifest_is_valid(tmp_path):
    acts = _store(tmp_path / "s")
    save_tensors(tmp_path / "s" / "empty.safetensors", {
        "activations": torch.empty(0, 4), "token_ids": torch.empty(0, dtype=torch.int32),
        "positions": torch.empty(0, dtype=torch.int32), "sequence": torch.empty(0, dtype=torch.int64)})
    _damage(tmp_path / "s", shards=[*GOOD_SHARDS[:2], {"file": "empty.safetensors", "rows": 0}, GOOD_SHARDS[2]])
    store = ActivationStore(tmp_path / "s")
    torch.testing.assert_close(store.read(), acts)
    torch.testing.assert_close(torch.cat(list(store.iter_batches(3, shuffle=False))), acts)


# ---- shards that do not match the manifest ---------------------------------------------------------------


def _rewrite_shard(path, **fields):
    from safetensors.torch import load_file

    file = path / "shard_00000.safetensors"
    tensors = load_file(file)
    tensors.update(fields)
    for k in [k for k, v in fields.items() if v is None]:
        del tensors[k]
    save_tensors(file, tensors)
    return file


@pytest.mark.parametrize("field, tensor, found, want", [
    ("activations", torch.zeros(4, 4, dtype=torch.float64), "F64 [4, 4]", "F32 [4, 4]"),
    ("activations", torch.zeros(3, 4), "F32 [3, 4]", "F32 [4, 4]"),
    ("token_ids", torch.zeros(4, dtype=torch.int64), "I64 [4]", "I32 [4]"),
    ("positions", torch.zeros(4, dtype=torch.int64), "I64 [4]", "I32 [4]"),
    ("sequence", torch.zeros(4, dtype=torch.int32), "I32 [4]", "I64 [4]"),
])
def test_a_shard_the_manifest_does_not_describe_is_refused(tmp_path, field, tensor, found, want):
    _store(tmp_path / "s")
    file = _rewrite_shard(tmp_path / "s", **{field: tensor})
    msg = f"{file}: {field} is {found} but the manifest says {want}; the manifest does not describe this shard"
    with pytest.raises(CheckpointError, match="^" + re.escape(msg) + "$"):
        ActivationStore(tmp_path / "s").read(0, 2, field="sequence")


def test_a_shard_without_activations_or_header_is_refused(tmp_path):
    _store(tmp_path / "s")
    file = _rewrite_shard(tmp_path / "s", activations=None)
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{file} holds no activations; it is not a shard of this store")):
        ActivationStore(tmp_path / "s").read(0, 2, field="token_ids")
    header = b'{"activations": "' + b"x" * (17 << 20) + b'"}'  # a valid JSON header of 17 MiB
    file.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="no readable safetensors header"):  # not read past 16 MiB
        ActivationStore(tmp_path / "s").read(0, 2)
    header = b"[1]"  # JSON, but not a table of tensors
    file.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="holds no activations"):
        ActivationStore(tmp_path / "s").read(0, 2)


def test_a_truncated_shard_says_how_much_was_read(tmp_path):
    _store(tmp_path / "s")
    file = tmp_path / "s" / "shard_00000.safetensors"
    size = int.from_bytes(file.read_bytes()[:8], "little")
    file.write_bytes(file.read_bytes()[: 8 + size])  # header only, no data
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{file} is truncated (read 0 of 48 bytes)") + "$"):
        ActivationStore(tmp_path / "s").read(1, 4)  # 3 rows of 4 float32


# ---- reads -----------------------------------------------------------------------------------------------


def test_empty_ranges_have_the_fields_shape_and_dtype(tmp_path):
    _store(tmp_path / "s", dtype="float16")
    store = ActivationStore(tmp_path / "s")
    assert store.last_stats == {} and store.row_shape == (4,)
    for start, stop in [(4, 4), (0, 0), (10, 12)]:
        empty = store.read(start, stop)
        assert empty.shape == (0, 4) and empty.dtype == torch.float16
        for field, dtype in [("token_ids", torch.int32), ("positions", torch.int32), ("sequence", torch.int64)]:
            e = store.read(start, stop, field=field)
            assert e.shape == (0,) and e.dtype == dtype and store.read(0, 3, field=field).dtype == dtype


def test_bfloat16_store_and_rows_of_one_number_or_a_matrix(tmp_path):
    acts = _store(tmp_path / "b", dtype="bfloat16")
    store = ActivationStore(tmp_path / "b")
    torch.testing.assert_close(store.read().float(), acts.to(torch.bfloat16).float())
    torch.testing.assert_close(next(iter(store.iter_batches(10, shuffle=False))).float(), acts)
    _store(tmp_path / "one", d=1)
    assert ActivationStore(tmp_path / "one").read(0, 3).tolist() == [[0.0], [1.0], [2.0]]
    _store(tmp_path / "m", d=6, shape=(2, 3))
    m = ActivationStore(tmp_path / "m")
    assert m.row_shape == (2, 3) and m.d == 6 and m.manifest["row_shape"] == [2, 3]


# ---- writer ----------------------------------------------------------------------------------------------


def test_writer_messages(tmp_path):
    _store(tmp_path / "s")
    msg = f"{tmp_path / 's'} already holds an activation store; pass overwrite=True (CLI: --overwrite) or choose another folder"
    with pytest.raises(StoreExistsError, match="^" + re.escape(msg) + "$"):
        StoreWriter(tmp_path / "s")
    with pytest.raises(ValueError, match=re.escape("store dtype must be one of ['bfloat16', 'float16', 'float32'], got 'float64'")):
        StoreWriter(tmp_path / "t", dtype="float64")
    w = StoreWriter(tmp_path / "u")
    w.add(torch.ones(2, 2, 3))
    with pytest.raises(ValueError, match=re.escape("row shape changed from (2, 3) to (3, 2)")):
        w.add(torch.ones(2, 3, 2))
    w.abort()


@pytest.mark.parametrize("dtype, shard_mb, d, rows", [
    ("float32", 64.0, 16, 2**20),  # the default: 64 MiB of 64-byte rows
    ("float16", 1.0, 8, 2**16),
    ("bfloat16", 1e-9, 8, 1),  # smaller than one row: one row per shard
])
def test_shard_rows_follow_shard_mb_and_the_stored_dtype(tmp_path, dtype, shard_mb, d, rows):
    kw = {} if shard_mb == 64.0 else {"shard_mb": shard_mb}
    w = StoreWriter(tmp_path / "s", dtype=dtype, **kw)
    w.add(torch.ones(3, d))
    assert w.shard_rows == rows
    w.abort()


def test_a_full_shard_is_written_as_soon_as_it_is_complete(tmp_path):
    w = StoreWriter(tmp_path / "s", shard_rows=4)
    w.add(torch.ones(4, 2))
    assert w.shards == [{"file": "shard_00000.safetensors", "rows": 4}] and w.pending_rows == 0
    w.add(torch.ones(3, 2))
    assert len(w.shards) == 1 and w.pending_rows == 3
    store = w.close()
    assert store.shard_sizes == [4, 3] and store.read(field="token_ids").tolist() == [-1] * 7  # no ids given


def test_created_is_utc_whatever_the_local_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Etc/GMT-5")  # UTC+5
    time.tzset()
    try:
        before = time.strftime("%Y-%m-%dT%H", time.gmtime())
        _store(tmp_path / "s")
        after = time.strftime("%Y-%m-%dT%H", time.gmtime())
    finally:
        monkeypatch.undo()
        time.tzset()
    created = ActivationStore(tmp_path / "s").manifest["created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created) and created[:13] in (before, after)


def test_overwrite_leaves_one_folder_even_if_the_old_one_cannot_be_removed(tmp_path, monkeypatch):
    _store(tmp_path / "s")
    _store_overwrite = lambda: StoreWriter(tmp_path / "s", overwrite=True)  # noqa: E731
    w = _store_overwrite()
    w.add(torch.ones(2, 3))
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # the old store was removed
    def failing(path, ignore_errors=False, **kw):  # a leftover that cannot be removed (busy file system)
        if not ignore_errors:
            raise OSError("device busy")

    monkeypatch.setattr(shutil, "rmtree", failing)
    w = _store_overwrite()
    w.add(torch.ones(5, 3))
    assert len(w.close()) == 5  # the new store is in place; the leftover is not an error


def test_a_buffer_of_two_rows_streams_one_row_chunks(tmp_path):
    _store(tmp_path / "s", n=10, d=16, shard_rows=4)
    store = ActivationStore(tmp_path / "s")
    rows = torch.cat(list(store.iter_batches(1, shuffle=False, max_memory_mb=72 * 3 / 2**20)))  # 3 rows of 64+8 B
    assert rows[:, 0].tolist() == [16.0 * i for i in range(10)]
    assert store.last_stats["buffer_rows"] == 2 and store.last_stats["chunks"] == 10  # chunks of 1 row
