"""Tiny transformer zoo: model mechanics, hook points, task ground truth, fast training, caching."""

from __future__ import annotations

import pytest
import torch

from isthmus.config import ConfigError
from isthmus.interp import HookError, capture, patch
from isthmus.interp.toy import TASKS, ToyConfig, ToyTransformer, make_task, train_toy


def _model(**kw) -> ToyTransformer:
    return ToyTransformer(ToyConfig(vocab_size=20, n_ctx=16, n_layers=2, d_model=32, n_heads=4, **kw)).eval()


def test_kv_cache_matches_full_forward_and_generation():
    model = _model()
    tokens = torch.randint(0, 20, (3, 10))
    with torch.no_grad():
        full = model(tokens)
        logits, cache = model(tokens[:, :6], use_cache=True)
        step, _ = model(tokens[:, 6:], past=cache, use_cache=True)
    torch.testing.assert_close(torch.cat([logits, step], 1), full, atol=1e-5, rtol=1e-4)
    out = model.generate(tokens[:, :4], n_new=5)
    assert out.shape == (3, 9) and torch.equal(out[:, :4], tokens[:, :4])
    with torch.no_grad():  # greedy: each new token is the argmax of a cache-free forward pass
        assert torch.equal(model(out[:, :-1])[:, 3:].argmax(-1), out[:, 4:])
    with pytest.raises(ValueError, match="n_ctx"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_hook_points_per_head_and_patching():
    model = _model()
    tokens = torch.randint(0, 20, (2, 8))
    names = ["blocks.1.attn.hook_z", "blocks.1.attn.hook_result", "blocks.1.hook_attn_out",
             "blocks.1.attn.hook_pattern", "blocks.0.hook_mlp_out", "blocks.1.hook_resid_post"]
    with torch.no_grad(), capture(model, names) as acts:
        model(tokens)
    assert acts["blocks.1.attn.hook_z"].shape == (2, 8, 4, 8)
    result = acts["blocks.1.attn.hook_result"]
    assert result.shape == (2, 8, 4, 32)
    torch.testing.assert_close(result.sum(2) + model.blocks[1].attn.W_O.bias, acts["blocks.1.hook_attn_out"],
                               atol=1e-6, rtol=1e-5)
    pattern = acts["blocks.1.attn.hook_pattern"]  # (B, H, T, T), causal rows summing to 1
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 4, 8))
    assert float(pattern.triu(1).abs().max()) == 0.0
    with torch.no_grad(), patch(model, "blocks.1.hook_resid_post", lambda x: torch.zeros_like(x)):
        logits = model(tokens)
    expected = model.unembed(model.ln_final(torch.zeros(2, 8, 32)))
    torch.testing.assert_close(logits, expected)
    with pytest.raises(HookError, match="read-only"), patch(model, "blocks.1.attn.hook_result", lambda x: x):
        pass
    assert _model(attn_only=True).blocks[0].mlp is None
    with pytest.raises(ConfigError, match="n_layers"):
        ToyConfig(n_layers=9)


def test_save_and_load_round_trip(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "m")
    loaded = ToyTransformer.from_pretrained(tmp_path / "m")
    tokens = torch.randint(0, 20, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model(tokens))


@pytest.mark.parametrize("name", sorted(set(TASKS) - {"shakespeare"}))
def test_task_generators_have_known_structure(name):
    data = make_task(name, 64, seed=3)
    again = make_task(name, 64, seed=3)
    assert torch.equal(data.tokens, again.tokens)  # deterministic
    assert data.tokens.shape == data.mask.shape and data.mask.any(1).all()
    assert int(data.tokens.max()) < data.vocab_size and not data.mask[:, 0].any()
    tok, m = data.tokens, data.meta
    if name == "induction":
        h = m["half"]
        assert torch.equal(tok[:, 1:h + 1], tok[:, h + 1:])
    elif name == "copy_reverse_sort":
        x, y = tok[:, 2:10], tok[:, 11:]
        for i, task in enumerate(m["task"]):
            ref = {"copy": x[i], "reverse": x[i].flip(0), "sort": x[i].sort().values}[task]
            assert torch.equal(y[i], ref)
    elif name == "ioi":
        assert torch.equal(tok[:, -1], m["io"]) and (m["io"] != m["s"]).all()
        assert ((tok[:, 2] == m["io"]) | (tok[:, 4] == m["io"])).all() and torch.equal(tok[:, 10], m["s"])
    elif name == "greater_than":
        assert (m["zz"] > m["yy"]).all() and (m["zz"] <= 99).all()
    elif name == "docstring":
        assert torch.equal(tok[:, m["answer_positions"]], m["args"])
    elif name == "fsm":
        trans, states = m["transitions"], m["states"]
        sym = tok[:, 2::2] - 1 - trans.shape[0]
        assert torch.equal(trans[states[:, :-1], sym], states[:, 1:])
        assert torch.equal(tok[:, 3::2] - 1, states[:, 1:])


def test_two_layer_induction_trains_fast_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path))
    train = dict(task="induction", n_train=1536, epochs=4, batch_size=32, task_kwargs=dict(vocab=24, half=8))
    arch = dict(n_layers=2, d_model=64, n_heads=4, attn_only=True)
    run = train_toy(train, arch)
    assert not run.cached and run.metrics["acc"] > 0.9, run.metrics  # held-out induction positions
    assert run.metrics["train_seconds"] > 0  # recorded; speed is a benchmark's job, not a unit test's
    assert run.path.parent == tmp_path / "toy" and (run.path / "model.safetensors").exists()
    again = train_toy(train, arch)
    assert again.cached and again.metrics == run.metrics
    tokens = make_task("induction", 4, seed=99, vocab=24, half=8).tokens
    with torch.no_grad():
        torch.testing.assert_close(again.model(tokens), run.model(tokens))


def test_char_model_on_tiny_shakespeare(shared_data):
    if not (shared_data / "tinyshakespeare" / "input.txt").exists():
        pytest.skip("tinyshakespeare is not present")
    run = train_toy(dict(task="shakespeare", n_train=1024, epochs=2, batch_size=32, task_kwargs=dict(n_ctx=32)),
                    dict(n_layers=1, d_model=48, n_heads=4), cache=False)
    assert run.model.cfg.vocab_size == 65 and run.vocab[:2] == ["\n", " "]
    assert run.metrics["ce"] < 3.2  # below the unigram entropy of the text (3.31 nats)
