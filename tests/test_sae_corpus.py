"""Streamed corpora: local parquet / jsonl / text through Hugging Face ``datasets`` (streaming), context
packing with the host tokenizer, several hook points harvested in one pass."""

from __future__ import annotations

import json

import pytest
import torch

from isthmus.interp.corpus import Corpus, pack_tokens

datasets = pytest.importorskip("datasets")
DOCS = [f"document {i} says " + " ".join(f"w{i}_{j}" for j in range(i % 7 + 3)) for i in range(40)]


class CharTokenizer:
    """A stand-in tokenizer (one id per character) with BOS and EOS, as HF tokenizers expose them."""

    bos_token_id, eos_token_id = 1, 2

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + (ord(c) % 90) for c in text]}


@pytest.fixture
def corpora(tmp_path):
    import pandas as pd

    (tmp_path / "pq").mkdir()
    pd.DataFrame({"body": DOCS[:20]}).to_parquet(tmp_path / "pq" / "a.parquet")
    pd.DataFrame({"body": DOCS[20:]}).to_parquet(tmp_path / "pq" / "b.parquet")
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    (tmp_path / "c.txt").write_text("\n".join(DOCS) + "\n")
    return tmp_path


def test_corpus_streams_every_format_in_order(corpora):
    assert list(Corpus(corpora / "pq", text_field="body").texts()) == DOCS
    assert list(Corpus(corpora / "c.jsonl").texts()) == DOCS
    assert list(Corpus(corpora / "c.txt").texts()) == DOCS
    assert list(Corpus(str(corpora / "c.*l")).texts()) == DOCS  # a glob (.jsonl)
    assert isinstance(Corpus(corpora / "c.jsonl").dataset(), datasets.IterableDataset)  # lazy, bounded memory
    with pytest.raises(KeyError, match="text_field"):
        next(Corpus(corpora / "pq").texts())
    with pytest.raises(FileNotFoundError):
        Corpus(corpora / "nothing-here").dataset()


def test_pack_tokens_fills_windows_without_padding_or_loss():
    tok = CharTokenizer()
    batches = list(pack_tokens(tok, iter(DOCS), context=32, batch_size=4))
    ids = torch.cat([b["input_ids"] for b in batches])
    assert ids.shape[1] == 32 and (ids[:, 0] == 1).all()  # every window opens with BOS
    assert all(b["attention_mask"].all() for b in batches)
    stream = [t for d in DOCS for t in tok(d)["input_ids"] + [2]]
    body = ids[:, 1:].reshape(-1).tolist()
    assert body == stream[: len(body)] and len(stream) - len(body) < 31  # in order; only the last partial window is dropped
    special = torch.cat([b["special_tokens_mask"] for b in batches])
    assert special[:, 0].all() and int(special.sum()) == len(ids) + body.count(2)
    assert sum(len(b["input_ids"]) for b in pack_tokens(tok, iter(DOCS), 32, 4, max_windows=5)) == 5


@pytest.mark.slow  # MiniLM forward passes: ~10 s on the shared 2 cores
def test_cli_harvest_streams_a_parquet_corpus_at_two_points(corpora, tmp_path):
    from isthmus.cli.main import main
    from isthmus.interp.store import ActivationStore

    out = tmp_path / "acts"
    assert main(["sae", "harvest", "--model", "minilm", "--corpus", str(corpora / "pq"), "--text-field", "body",
                 "--points", "blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "--max-length", "32",
                 "--max-tokens", "300", "--out", str(out), "--no-progress"]) == 0
    a, b = ActivationStore(out / "blocks.0.hook_resid_post"), ActivationStore(out / "blocks.1.hook_mlp_out")
    assert len(a) == len(b) == 300 and a.d == b.d == 384
    assert torch.equal(a.read(field="positions"), b.read(field="positions"))
    assert (a.read(field="positions") > 0).all()  # the [CLS] opening each packed window was dropped
