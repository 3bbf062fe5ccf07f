"""The synthetic superposition benchmark: data properties, and a TopK SAE recovering its features."""

from __future__ import annotations

import pytest
import torch

from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
from isthmus.interp.superposition import SuperpositionData, feature_recovery


def test_data_is_sparse_zipf_correlated_and_hierarchical():
    data = SuperpositionData(d=32, n_features=128, p_max=0.1, p_min=0.01, correlation=0.5, n_parents=4)
    x, coef = data.sample(20000)
    assert x.shape == (20000, 32) and coef.shape == (20000, 128)
    torch.testing.assert_close(x, coef @ data.features)
    fire = coef != 0
    assert 0.5 < float(fire.sum(1).float().mean()) < 8  # sparse
    kids = data.is_child.nonzero().squeeze(1)
    assert not (fire[:, kids] & ~fire[:, data.parent[kids]]).any(), "a child fired without its parent"
    roots = (~data.is_child).nonzero().squeeze(1)
    freq = fire[:, roots].float().mean(0)
    torch.testing.assert_close(freq, data.p[roots], atol=0.01, rtol=0.15)  # firing follows the Zipf rates
    f = fire.float()
    same = torch.corrcoef(torch.stack([f[:, 32], f[:, 33]]))[0, 1]  # same group of 4
    other = torch.corrcoef(torch.stack([f[:, 32], f[:, 36]]))[0, 1]
    assert same > other + 0.02


def test_feature_recovery_scores():
    feats = torch.eye(4, 8)
    assert feature_recovery(feats, torch.cat([feats * 3, torch.randn(2, 8)]))["recall"] == 1.0
    r = feature_recovery(feats, -feats)
    assert r["recall"] == 0.0 and r["mean_max_cos"] == pytest.approx(0.0)  # best match is an orthogonal row


def test_topk_sae_recovers_features_and_random_dictionary_does_not():
    data = SuperpositionData(d=32, n_features=128, p_max=0.1, p_min=0.01)
    x, _ = data.sample(20000)
    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=32, d_sae=256, bottleneck_config={"k": 3, "dead_steps": 50}))
    before = feature_recovery(data.features, sae.W_dec)
    train_sae(sae, x, SAETrainConfig(steps=400, batch_size=256, lr=4e-3))
    after = feature_recovery(data.features, sae.W_dec)
    assert after["recall"] >= 0.6 and after["mean_max_cos"] >= 0.85, after
    assert before["recall"] <= 0.05 and before["mean_max_cos"] < 0.7, before
