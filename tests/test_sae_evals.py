"""Standard SAE evaluations: shrinkage, KL score when spliced, absorption on a planted hierarchy, k-sparse
probing. Each test builds a case whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.sae_evals import (absorption_from_codes, k_sparse_probe, planted_absorption,
                                      planted_probe_tasks, probe_tasks_from_tokens, sparse_probing)
from isthmus.interp.sae_train import SAETrainConfig, train_sae
from isthmus.interp.superposition import SuperpositionData
from isthmus.metrics.sae import evaluate_sae

torch.set_num_threads(1)


def _hierarchy(n: int = 4000, seed: int = 0):
    """8 orthogonal features; feature 0 is a parent with rarer, mutually exclusive children 2 and 3."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.eye(8)
    coef = torch.zeros(n, 8)
    parent = torch.rand(n, generator=g) < 0.5
    u = torch.rand(n, generator=g)
    child = (u > 0.7).long() + (u > 0.85).long()  # 0: none (70 %), 1: child 2, 2: child 3 (15 % each)
    coef[:, 0] = parent * (0.5 + torch.rand(n, generator=g))
    coef[:, 2] = (parent & (child == 1)) * (0.5 + torch.rand(n, generator=g))
    coef[:, 3] = (parent & (child == 2)) * (0.5 + torch.rand(n, generator=g))
    coef[:, 5] = (torch.rand(n, generator=g) < 0.3) * 1.0
    return feats, coef, parent, (child > 0) & parent


def test_absorption_is_zero_for_the_true_dictionary_and_exact_for_an_absorbing_one():
    feats, coef, parent, has_child = _hierarchy()
    clean = absorption_from_codes(coef, feats, feats, coef, [0])
    assert clean["absorption_rate"] == 0 and clean["false_negative_rate"] == 0 and clean["main_f1"] == 1.0
    # absorbing dictionary: each child latent is parent+child, and the parent latent goes silent whenever a
    # child fires (what an L0-minimising SAE learns on a hierarchy)
    dic = feats.clone()
    dic[2], dic[3] = (feats[0] + feats[2]) / 2 ** 0.5, (feats[0] + feats[3]) / 2 ** 0.5
    codes = coef.clone()
    codes[has_child, 0] = 0
    for c in (2, 3):
        on = coef[:, c] > 0
        codes[on, c] = (coef[on, 0] ** 2 + coef[on, c] ** 2).sqrt()
    r = absorption_from_codes(codes, dic, feats, coef, [0])
    expected = float(has_child.sum() / parent.sum())
    assert r["per_parent"][0]["main_latent"] == 0
    assert r["absorption_rate"] == pytest.approx(expected) and r["false_negative_rate"] == pytest.approx(expected)
    # a plain false negative (nothing else carries the parent) is not absorption
    codes[has_child, 2:4] = 0
    r2 = absorption_from_codes(codes, dic, feats, coef, [0])
    assert r2["absorption_rate"] == 0 and r2["false_negative_rate"] == pytest.approx(expected)


def test_k_sparse_probe_finds_the_one_informative_column():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20))
    y = x[:, 7] > 0.2
    acc = k_sparse_probe(x[:400], y[:400], x[400:], y[400:], ks=(1, 5))
    assert acc["1"] > 0.95
    noise = k_sparse_probe(x[:400], rng.random(400) < 0.5, x[400:], rng.random(200) < 0.5, ks=(1,))
    assert noise["1"] < 0.7
    with pytest.raises(ValueError, match="both classes"):
        k_sparse_probe(x[:10], np.zeros(10, bool), x[10:20], np.zeros(10, bool))


def test_trained_sae_beats_input_dims_at_k1_and_reports_absorption_and_shrinkage():
    data = SuperpositionData(d=32, n_features=128, p_max=0.1, p_min=0.01, n_parents=4)
    x, _ = data.sample(20000)
    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=32, d_sae=256, bottleneck_config={"k": 3, "dead_steps": 50}))
    train_sae(sae, x, SAETrainConfig(steps=400, batch_size=256, lr=4e-3))
    xe, coef = data.sample(4000, torch.Generator().manual_seed(99))
    probe = sparse_probing(sae, xe, planted_probe_tasks(coef, n_tasks=3), ks=(1, 4))
    assert probe["mean"]["sae_k1"] > probe["mean"]["inputs_k1"] + 0.05, probe["mean"]  # features are not axis-aligned
    ab = planted_absorption(sae, data, n=8000)
    assert len(ab["per_parent"]) == 4 and 0 <= ab["absorption_rate"] <= ab["false_negative_rate"] <= 1
    m = evaluate_sae(sae, [xe])
    assert 0.5 < m["l2_ratio"] < 1.2 and 0.5 < m["relative_reconstruction_bias"] < 1.5


def test_shrinkage_detects_a_shrunk_reconstruction():
    class Half(torch.nn.Module):  # reconstructs x/2 exactly: l2 ratio 0.5, γ = 0.5
        def forward(self, x):
            from isthmus.models.output import ModelOutput
            return ModelOutput(loss=torch.tensor(0.0), recon=x / 2, latent=x.abs())
    m = evaluate_sae(Half(), [torch.randn(100, 8)])
    assert m["l2_ratio"] == pytest.approx(0.5) and m["relative_reconstruction_bias"] == pytest.approx(0.5)


def test_token_identity_tasks():
    ids = torch.tensor([5] * 50 + [7] * 30 + [1] * 2 + [-1] * 0)
    tasks = probe_tasks_from_tokens(ids, n_tasks=3, min_share=0.05)
    assert list(tasks) == ["token_5", "token_7"] and tasks["token_5"].sum() == 50
    assert probe_tasks_from_tokens(torch.full((10,), -1)) == {}


def test_kl_score_when_spliced_on_a_causal_toy():
    from isthmus.interp.splice import splice_loss_recovered
    from isthmus.interp.toy import ToyConfig, ToyTransformer

    torch.manual_seed(0)
    model = ToyTransformer(ToyConfig(vocab_size=16, n_ctx=12, d_model=32, n_heads=2)).eval()
    tokens = torch.randint(0, 16, (8, 12))
    exact = splice_loss_recovered(model, [tokens], "blocks.1.hook_resid_pre", lambda v: v)
    assert exact.kl_spliced == pytest.approx(0.0, abs=1e-6) and exact.kl_score == pytest.approx(1.0)
    assert exact.kl_zero_ablated > 0
    noisy = splice_loss_recovered(model, [tokens], "blocks.1.hook_resid_pre", lambda v: v + 0.5 * torch.randn_like(v))
    assert 0 < noisy.kl_spliced and noisy.kl_score < 1
