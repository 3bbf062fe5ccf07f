"""SAE metrics: formulas on hand-made inputs, the firing window, and evaluate_sae on a model."""

from __future__ import annotations

import math

import pytest
import torch

from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.metrics import (
    FiringTracker, cosine_similarity, density_histogram, evaluate_sae, explained_variance, fvu, l0, loss_recovered,
    loss_recovered_from_callables, sae_mse,
)


def test_reconstruction_formulas():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert fvu(x, x) == 0.0
    assert fvu(x, torch.zeros_like(x)) == pytest.approx(1.0)  # predicting the mean explains nothing
    assert explained_variance(x, x * 0.5) == pytest.approx(0.75)
    assert sae_mse(x, torch.zeros_like(x)) == pytest.approx(0.5)
    assert cosine_similarity(x, 3 * x) == pytest.approx(1.0)
    assert l0(torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.0, 5.0]])) == 1.5


def test_loss_recovered():
    assert loss_recovered(2.0, 2.0, 6.0) == 1.0
    assert loss_recovered(2.0, 6.0, 6.0) == 0.0
    assert loss_recovered(2.0, 3.0, 6.0) == pytest.approx(0.75)
    assert math.isnan(loss_recovered(2.0, 3.0, 2.0))
    calls = []
    out = loss_recovered_from_callables(lambda: calls.append("c") or 1.0, lambda: 1.5, lambda: 3.0)
    assert out["loss_recovered"] == pytest.approx(0.75) and calls == ["c"]


def test_firing_tracker_window_dead_dense():
    t = FiringTracker(4, window=4)
    t.update(torch.tensor([[1.0, 0, 0, 1], [1, 0, 0, 0]]))  # latent 2 never fires
    t.update(torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 0]]))
    assert t.dead_fraction() == 0.25
    assert t.density().tolist() == [1.0, 0.25, 0.0, 0.25]
    assert t.dense_fraction(0.5) == 0.25
    t.update(torch.tensor([[0.0, 0, 1, 0], [0, 0, 1, 0]]))  # the first chunk leaves the window
    assert t.tokens == 4 and t.density().tolist() == [0.5, 0.25, 0.5, 0.0]


def test_density_histogram_counts_dead_apart():
    h = density_histogram(torch.tensor([0.0, 1e-3, 1e-3, 0.5]), bins=7, log_range=(-7, 0))
    assert h["dead"] == 1 and sum(h["counts"]) == 3 and len(h["log10_edges"]) == 8


def test_evaluate_sae_on_a_model():
    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=32, bottleneck_config={"k": 3}))
    x = torch.randn(100, 8)
    res = evaluate_sae(sae, [x[:50], x[50:]])
    assert res["l0"] == pytest.approx(3.0) and res["tokens"] == 100
    out = sae(x)
    assert res["fvu"] == pytest.approx(fvu(x, out.recon.detach()), rel=1e-4)
    assert res["dead_fraction"] == res["density_histogram"]["dead"] / 32 and sum(res["density_histogram"]["counts"]) + res["density_histogram"]["dead"] == 32
