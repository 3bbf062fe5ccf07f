"""context-autoencoder recipe: the alignment read-out and the shared split."""

import pytest
import torch

from isthmus.recipes import context_autoencoder as cae


def test_align_loss_reads_the_term_even_at_lambda_zero_and_restores_the_weight():
    s = cae.Settings(dim=16)
    torch.manual_seed(0)
    model = cae._cae(s, 0.0)
    x = torch.rand(4, 1, 28, 28)
    a = cae._align_loss(model, x)
    assert a > 0 and model.config.align_weight == 0.0
    assert "align" not in model(x).losses  # the λ = 0 ablation really drops the term from training
    assert cae._align_loss(model, x) == pytest.approx(a)  # fixed masks: the read-out is deterministic


def test_gates_compare_the_declared_arms():
    r = cae.ContextAutoencoder()
    arms = r.arms(r.modes["quick"])
    assert {g.arm for g in r.gates} == {"cae"} and {g.vs for g in r.gates} == {"mae", "cae_lambda0"}
    assert sum(g.headline for g in r.gates) == 1 and set(arms) >= {"cae", "cae_lambda0", "mae", "random_init"}
