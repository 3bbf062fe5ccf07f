"""Activation store: round trip, manifest, atomic writes, bounded-memory shuffled streaming."""

from __future__ import annotations

import json

import pytest
import torch

from isthmus.interp import ActivationStore, StoreWriter, harvest_to_store
from isthmus.interp.store import StoreExistsError
from isthmus.io import CheckpointError


def _write(path, n=1000, d=16, shard_rows=128, dtype="float32"):
    acts = torch.arange(n * d, dtype=torch.float32).view(n, d)  # row i starts with i * d: identifiable
    with StoreWriter(path, shard_rows=shard_rows, dtype=dtype, meta={"model": "m", "point": "p", "dataset": "x"}) as w:
        for s in range(0, n, 77):  # chunks that do not align with shards
            e = min(s + 77, n)
            w.add(acts[s:e], token_ids=torch.arange(s, e), positions=torch.arange(s, e) % 10,
                  sequence=torch.arange(s, e) // 10)
    return acts


def test_round_trip_and_manifest(tmp_path):
    acts = _write(tmp_path / "s")
    store = ActivationStore(tmp_path / "s")
    assert len(store) == 1000 and store.d == 16 and store.shard_sizes[:2] == [128, 128]
    assert sum(store.shard_sizes) == 1000
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert {m["model"], m["point"], m["dataset"], m["dtype"]} == {"m", "p", "x", "float32"}
    assert m["row_shape"] == [16] and m["n_rows"] == 1000
    torch.testing.assert_close(store.read(), acts)
    torch.testing.assert_close(store.read(120, 300), acts[120:300])
    assert store.read(5, 9, field="token_ids").tolist() == [5, 6, 7, 8]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder renamed away


def test_failed_write_leaves_nothing_and_existing_store_is_protected(tmp_path):
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "s", shard_rows=4) as w:
        w.add(torch.randn(10, 3))
        raise RuntimeError("crash mid-harvest")
    assert list(tmp_path.iterdir()) == []
    _write(tmp_path / "s", n=50)
    with pytest.raises(StoreExistsError, match="overwrite"):
        StoreWriter(tmp_path / "s")
    _write_small = StoreWriter(tmp_path / "s", overwrite=True)
    _write_small.add(torch.ones(3, 2))
    assert len(_write_small.close()) == 3
    (tmp_path / "s" / "shard_00000.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        ActivationStore(tmp_path / "s")


def test_store_larger_than_memory_limit_streams_every_row_once(tmp_path):
    acts = _write(tmp_path / "s", n=3000, d=64, shard_rows=500)  # 3000 * 64 * 4 B = 750 KiB on disk
    store = ActivationStore(tmp_path / "s")
    reads: list[int] = []
    real_read_into = store._read_into

    def counting(shard, field, start, stop, out):  # independent check: bytes pulled from disk per read
        reads.append(out.nbytes)
        real_read_into(shard, field, start, stop, out)

    store._read_into = counting
    limit_mb = 0.125  # 128 KiB: the store is ~6x larger than the memory limit
    ids, first = [], None
    for batch in store.iter_batches(32, shuffle=True, seed=1, max_memory_mb=limit_mb):
        assert batch.shape[1] == 64
        ids.append(batch[:, 0] / 64)  # row index from its first value
        first = first if first is not None else batch[:, 0].clone()
    seen = torch.cat(ids).long()
    assert sorted(seen.tolist()) == list(range(3000))  # every row exactly once
    stats = store.last_stats
    assert 0 < stats["peak_held_bytes"] <= limit_mb * 2**20 < acts.nbytes / 4
    assert sum(reads) == acts.nbytes and max(reads) < limit_mb * 2**20 / 2  # each row read once, in chunks
    assert not torch.equal(seen, torch.arange(3000))  # shuffled across shards
    assert len({int(i) // 500 for i in seen[:32]}) > 1  # the first batch mixes shards
    again = next(iter(store.iter_batches(32, shuffle=True, seed=1, max_memory_mb=limit_mb)))
    assert torch.equal(again[:, 0], first)  # deterministic for a seed
    other = next(iter(store.iter_batches(32, shuffle=True, seed=2, max_memory_mb=limit_mb)))
    assert not torch.equal(other[:, 0], first)


def test_sequential_read_with_metadata(tmp_path):
    acts = _write(tmp_path / "s", n=700, shard_rows=128)
    store = ActivationStore(tmp_path / "s")
    batches = list(store.iter_batches(50, shuffle=False, max_memory_mb=0.05, with_meta=True))
    torch.testing.assert_close(torch.cat([b["activations"] for b in batches]), acts)
    assert torch.cat([b["token_ids"] for b in batches]).tolist() == list(range(700))
    assert batches[-1]["sequence"][-1] == 69 and len(batches) == 14
    dropped = list(store.iter_batches(64, shuffle=False, drop_last=True, max_memory_mb=0.05))
    assert sum(len(b) for b in dropped) == 640
    with pytest.raises(ValueError, match="at least 3 batches"):
        next(iter(store.iter_batches(4096, max_memory_mb=0.01)))


def test_half_precision_store(tmp_path):
    acts = torch.randn(100, 8)
    with StoreWriter(tmp_path / "h", dtype="float16") as w:
        w.add(acts)
    store = ActivationStore(tmp_path / "h")
    batch = next(iter(store.iter_batches(100, shuffle=False, dtype=torch.float32)))
    assert batch.dtype == torch.float32
    torch.testing.assert_close(batch, acts, atol=2e-3, rtol=2e-3)


def test_harvest_to_store_from_a_module(tmp_path):
    torch.manual_seed(0)
    emb = torch.nn.Sequential(torch.nn.Embedding(20, 6), torch.nn.Linear(6, 6))
    batches = [torch.randint(0, 20, (4, 5)) for _ in range(3)]
    stores = harvest_to_store(emb, batches, ["0", "1"], tmp_path / "st", max_tokens=50, progress=False,
                              meta={"model": "toy-emb"})
    assert set(stores) == {"0", "1"} and len(stores["1"]) == 50
    first = torch.cat(batches).flatten()[:50]
    with torch.no_grad():
        expected = emb(first)
    torch.testing.assert_close(stores["1"].read(), expected)
    assert stores["0"].read(field="token_ids").tolist() == first.tolist()
    assert stores["1"].manifest["model"] == "toy-emb" and stores["1"].manifest["point"] == "1"
