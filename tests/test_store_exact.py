"""The activation store pinned to exact values, written against the survivors of
`make mutate MODULES=store` (docs/mutation.md): which tokens a harvest keeps (padding, special
tokens, ``max_tokens``, rank shards), the ids it records, what harvest_to_store passes on, the
streaming buffer's sizes and statistics, and the messages that say what to fix.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from isthmus.interp import ActivationStore, StoreWriter, harvest_to_store
from isthmus.interp.store import iter_activations


class Toy(nn.Module):
    """Token ids -> embedding -> ``proj``; accepts tokenizer-style keyword inputs (dict batches)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 4)
        self.proj = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, flag=None):
        self.calls += 1
        return self.proj(self.emb(input_ids))


class NoParams(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Identity()

    def forward(self, ids):
        return self.out(ids.float().unsqueeze(-1))


def _rows(it):
    rows = list(it)
    cat = lambda f: torch.cat([getattr(r, f) for r in rows]).tolist()  # noqa: E731
    return cat("token_ids"), cat("positions"), cat("sequence"), rows


# ---- which tokens are kept -------------------------------------------------------------------------------


def test_dict_batches_drop_padding_and_special_tokens():
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
             "special_tokens_mask": torch.tensor([[1, 0, 0, 1], [1, 0, 0, 0]]), "flag": True}
    model = Toy()
    tok, pos, seq, rows = _rows(iter_activations(model, [batch], ["proj"]))  # drop_special by default
    assert (tok, pos, seq) == ([2, 3, 6], [1, 2, 1], [0, 0, 1])
    with torch.no_grad():
        expected = model(ids)[[0, 0, 1], [1, 2, 1]]
    torch.testing.assert_close(rows[0].acts["proj"], expected)
    assert rows[0].token_ids.dtype == rows[0].positions.dtype == torch.int32 and rows[0].sequence.dtype == torch.int64
    tok, _, _, _ = _rows(iter_activations(model, [batch], ["proj"], drop_special=False))
    assert tok == [1, 2, 3, 4, 5, 6]  # padding still dropped
    no_mask = {"input_ids": ids}
    assert _rows(iter_activations(model, [no_mask], ["proj"]))[0] == list(range(1, 9))


def test_tensor_and_tuple_batches_keep_every_token():
    ids = torch.tensor([[1, 2], [3, 4]])
    labels = torch.tensor([[9, 9], [9, 9]])
    tok, pos, seq, _ = _rows(iter_activations(Toy(), [(ids, labels), ids], ["proj"]))
    assert tok == [1, 2, 3, 4] * 2 and pos == [0, 1] * 4 and seq == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("bad, name", [("text", "str"), (torch.ones(3, dtype=torch.long), "Tensor")])
def test_a_batch_of_the_wrong_kind_is_named(bad, name):
    msg = (r"^each batch must be a dict of tokenizer outputs, a \(B, T\) token tensor, or a tuple starting with "
           f"one; got {name}$")
    with pytest.raises(TypeError, match=msg):
        list(iter_activations(Toy(), [bad], ["proj"]))


def test_a_parameter_free_model_runs_on_the_cpu():
    tok, _, _, rows = _rows(iter_activations(NoParams(), [torch.tensor([[3, 4]])], ["out"]))
    assert tok == [3, 4] and rows[0].acts["out"].tolist() == [[3.0], [4.0]]


def test_max_tokens_stops_without_running_later_batches():
    model = Toy()
    batches = [torch.arange(6).view(2, 3), torch.arange(6).view(2, 3), torch.arange(6).view(2, 3)]
    tok, _, seq, _ = _rows(iter_activations(model, batches, ["proj"], max_tokens=6))
    assert len(tok) == 6 and seq == [0, 0, 0, 1, 1, 1] and model.calls == 1  # the limit was reached exactly
    tok, _, seq, _ = _rows(iter_activations(model, batches, ["proj"], max_tokens=8))
    assert len(tok) == 8 and seq[-2:] == [2, 2]


@pytest.mark.parametrize("max_tokens", [None, 13])
def test_rank_shards_together_are_the_one_process_rows(max_tokens):
    """Every rank reads every batch but runs only its own; kept tokens, sequence ids and max_tokens are
    decided from the masks alone, so the ranks' rows together are exactly one process's rows."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for b in range(5):
        ids = torch.randint(1, 50, (2 + b % 2, 4), generator=gen)
        mask = (torch.rand(ids.shape, generator=gen) > 0.3).long()
        batches.append({"input_ids": ids, "attention_mask": mask})
    one = _rows(iter_activations(Toy(), batches, ["proj"], max_tokens=max_tokens))
    shards = [_rows(iter_activations(Toy(), batches, ["proj"], max_tokens=max_tokens, rank=r, world=2))
              for r in range(2)]
    merged = sorted(zip(*(shards[0][i] + shards[1][i] for i in range(3))), key=lambda t: (t[2], t[1]))
    assert merged == sorted(zip(*one[:3]), key=lambda t: (t[2], t[1]))
    assert all(len(s[0]) for s in shards)  # both ranks did work


def test_autocast_dtype_runs_the_host_in_low_precision():
    model, ids = Toy(), torch.tensor([[1, 2, 3]])
    _, _, _, rows = _rows(iter_activations(model, [ids], ["proj"], autocast_dtype="bfloat16"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(ids)[0].float()
    torch.testing.assert_close(rows[0].acts["proj"], expected, rtol=0, atol=0)
    assert not torch.equal(expected, model(ids)[0].detach())  # bf16 is visibly not fp32 here


# ---- harvest_to_store ------------------------------------------------------------------------------------


def test_harvest_one_named_point_returns_one_store_with_every_field(tmp_path, capfd):
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    batch = {"input_ids": ids, "special_tokens_mask": torch.tensor([[1, 0, 0], [0, 0, 0]])}
    t0 = time.perf_counter()
    store = harvest_to_store(Toy(), [batch, batch], "proj", tmp_path / "s", dtype="float16", shard_mb=16 / 2**20)
    wall = time.perf_counter() - t0
    assert isinstance(store, ActivationStore) and store.path == tmp_path / "s"
    assert store.manifest["dtype"] == "float16" and store.manifest["point"] == "proj"
    assert len(store) == 10 and store.shard_sizes == [2, 2, 2, 2, 2]  # 16 B shards of 3 float16 = 2 rows
    assert store.read(field="token_ids").tolist() == [2, 3, 4, 5, 6] * 2  # special token dropped by default
    assert store.read(field="positions").tolist() == [1, 2, 0, 1, 2] * 2
    assert store.read(field="sequence").tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    h = store.manifest["harvest_seconds"]
    assert isinstance(h, float) and 0 <= h <= wall + 1e-3 and h == round(h, 3)
    err = capfd.readouterr().err
    assert "harvest: 10tok" in err and "tok/s" in err  # a progress bar by default (no total without max_tokens)
    with pytest.raises(ValueError, match="already holds an activation store"):
        harvest_to_store(Toy(), [batch], "proj", tmp_path / "s", progress=False)
    again = harvest_to_store(Toy(), [ids], "proj", tmp_path / "s", progress=False, overwrite=True)
    assert len(again) == 6 and capfd.readouterr().err == ""


def test_harvest_max_tokens_progress_total_and_several_points(tmp_path, capfd):
    stores = harvest_to_store(Toy(), [torch.ones(2, 5, dtype=torch.long)] * 3, ["emb", "proj"], tmp_path / "m",
                              max_tokens=12, autocast_dtype="bfloat16")
    assert set(stores) == {"emb", "proj"} and [len(s) for s in stores.values()] == [12, 12]
    assert stores["proj"].path == tmp_path / "m" / "proj" and stores["emb"].manifest["point"] == "emb"
    err = capfd.readouterr().err
    assert "harvest: 100%|" in err and "12/12" in err
    model = Toy()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(torch.ones(1, 1, dtype=torch.long))[0, 0].float()
    torch.testing.assert_close(stores["proj"].read()[0], expected, rtol=0, atol=0)


# ---- writer ----------------------------------------------------------------------------------------------


def test_closing_an_empty_writer_inside_with_reports_the_real_error(tmp_path):
    with pytest.raises(ValueError, match="no rows were added"):
        with StoreWriter(tmp_path / "s") as w:
            w.close()  # aborts (removes the temp folder) and raises; __exit__ aborts again
    assert list(tmp_path.iterdir()) == []


# ---- reader: streaming -----------------------------------------------------------------------------------


def _store(path, n=1000, d=16, shard_rows=128):
    acts = torch.arange(n * d, dtype=torch.float32).view(n, d)
    with StoreWriter(path, shard_rows=shard_rows) as w:
        w.add(acts, token_ids=torch.arange(n))
    return ActivationStore(path), acts


def test_repr(tmp_path):
    with StoreWriter(tmp_path / "s", meta={"model": "m", "point": "p"}) as w:
        w.add(torch.ones(3, 2))
    assert repr(ActivationStore(tmp_path / "s")) == (
        f"ActivationStore({str(tmp_path / 's')!r}, rows=3, d=2, point='p', model='m', shards=1)"
    )


def test_stream_statistics_are_exact(tmp_path):
    store, acts = _store(tmp_path / "s")
    batches = list(store.iter_batches(50, shuffle=False))
    torch.testing.assert_close(torch.cat(batches), acts)
    # buffer 1000 rows x 64 B + its permutation (1000 x 8 B) + one batch (50 x 64 B)
    assert store.last_stats == {"limit_bytes": 512 * 2**20, "peak_held_bytes": 64000 + 8000 + 3200,
                                "rows_yielded": 1000, "chunks": 8, "buffer_rows": 1000}


def test_stream_defaults_are_shuffled_with_seed_0(tmp_path):
    store, _ = _store(tmp_path / "s", n=300, shard_rows=100)
    default = torch.cat(list(store.iter_batches(30)))
    assert torch.equal(default, torch.cat(list(store.iter_batches(30, shuffle=True, seed=0))))
    assert not torch.equal(default, torch.cat(list(store.iter_batches(30, shuffle=False))))


def test_memory_limit_sizes_the_buffer_and_chunks(tmp_path):
    store, acts = _store(tmp_path / "s")  # rows of 64 B (+ 8 B permutation index)
    mb = 72 * 400 / 2**20  # exactly 400 buffered rows
    ids = torch.cat([b[:, 0] for b in store.iter_batches(100, shuffle=True, max_memory_mb=mb)]) / 16
    assert sorted(ids.long().tolist()) == list(range(1000))
    # capacity 400 - 100 = 300 rows; chunks of (300 - 100) // 4 = 50 rows: 3 per shard of 128, 1 of the last 104
    assert store.last_stats["buffer_rows"] == 300 and store.last_stats["chunks"] == 7 * 3 + 3
    assert store.last_stats["peak_held_bytes"] <= 72 * 400
    exactly_three = 72 * 300 / 2**20  # room for 3 batches of 100: allowed
    assert len(list(store.iter_batches(100, max_memory_mb=exactly_three))) == 10
    with pytest.raises(ValueError) as info:
        next(iter(store.iter_batches(100, max_memory_mb=72 * 299 / 2**20)))
    assert str(info.value) == (f"max_memory_mb={72 * 299 / 2**20} holds 299 rows of 64 bytes; it must hold at least "
                               "3 batches (300 rows): raise it or lower batch_size")


def test_a_single_row_store_streams_its_row(tmp_path):
    store, acts = _store(tmp_path / "s", n=1, d=4)
    assert [b.tolist() for b in store.iter_batches(4)] == [acts.tolist()]
    assert store.last_stats["rows_yielded"] == 1


def test_manifest_round_trip_is_plain_json(tmp_path):
    store, _ = _store(tmp_path / "s", n=10, shard_rows=4)
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["shards"] == [{"file": f"shard_0000{i}.safetensors", "rows": r} for i, r in enumerate([4, 4, 2])]
    assert m["fields"] == {"activations": "float32", "token_ids": "int32", "positions": "int32", "sequence": "int64"}
    assert (m["format"], m["version"], m["d"], m["n_rows"]) == ("isthmus.activation_store", 1, 16, 10)
