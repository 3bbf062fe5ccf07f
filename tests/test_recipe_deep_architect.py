"""deep-architect: the space, the batched trainer (checked against torch modules) and the table logic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from isthmus.recipes import deep_architect as da
from isthmus.search import count, key, resolve, sample_path


def test_space_has_1080_configs():
    # (1 + 1) depths of 3 x 2 x 3 = 18 per layer choices, untied depth 2: 18^2; x 3 learning rates
    assert count(da.SPACE) == da.N_CONFIGS == (18 + 18 * 18 + 18) * 3 == 1080


@pytest.mark.parametrize("seed", range(6))
def test_sampled_architectures_build_run_and_round_trip(seed):
    arch = resolve(da.SPACE, sample_path(da.SPACE, np.random.default_rng(seed)))
    assert json.loads(key(arch)) == arch
    net = da.StackedMLP([arch["body"]] * 2, 64, 10, seeds=[0, 1], lrs=[1e-3, 1e-2])
    out = net.forward(torch.randn(2, 5, 64), train=True)
    assert out.shape == (2, 5, 10) and torch.isfinite(out).all()


def _reference(net: da.StackedMLP, k: int, body: list) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i, layer in enumerate(net.layers):
        lin = nn.Linear(*layer["w"].shape[1:])
        lin.weight.data, lin.bias.data = layer["w"][k].detach().T.clone(), layer["b"][k, 0].detach().clone()
        mods.append(lin)
        if i < len(body):
            if body[i][1] is not None:
                mods.append(nn.BatchNorm1d(lin.out_features))
            mods.append({"relu": nn.ReLU(), "tanh": nn.Tanh(), "elu": nn.ELU()}[body[i][2]["type"]])
    return nn.Sequential(*mods)


BN_BODY = [[{"type": "affine", "width": 8}, {"type": "batchnorm"}, {"type": "elu"}],
           [{"type": "affine", "width": 6}, None, {"type": "tanh"}]]
PLAIN_BODY = [[{"type": "affine", "width": 8}, None, {"type": "relu"}],
              [{"type": "affine", "width": 6}, None, {"type": "elu"}]]


@pytest.mark.parametrize("body", [BN_BODY, PLAIN_BODY], ids=["batchnorm", "plain"])
def test_stacked_mlp_matches_torch_modules_and_adam_in_training(body):
    other = [[body[0][0], None if body[0][1] else {"type": "batchnorm"}, {"type": "tanh"}], body[1]]
    net = da.StackedMLP([body, other], 5, 3, seeds=[0, 1], lrs=[1e-2, 1e-3])
    refs = [_reference(net, k, b) for k, b in enumerate((body, other))]
    opts = [torch.optim.Adam(r.parameters(), lr=lr) for r, lr in zip(refs, (1e-2, 1e-3))]
    torch.manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(2, 16, 5), torch.randint(3, (2, 16))
        out = net.forward(x, train=True)
        losses = [nn.functional.cross_entropy(out[k], y[k]) for k in range(2)]
        net.step(sum(losses))
        for k in range(2):
            refs[k].train()
            ref_loss = nn.functional.cross_entropy(refs[k](x[k]), y[k])
            assert torch.allclose(ref_loss, losses[k].detach(), atol=1e-5)
            opts[k].zero_grad()
            ref_loss.backward()
            opts[k].step()
    xe = torch.randn(7, 5)
    for k in range(2):
        refs[k].eval()
        if (body, other)[k][0][1] is not None:
            # the bias before a BatchNorm gets only rounding-noise gradients, which Adam scales up, so
            # running means drift apart by ~1e-3 between any two implementations; the variance does not
            assert torch.allclose(net.layers[0]["var"][k, 0], refs[k][1].running_var, atol=1e-5)
            continue
        with torch.no_grad():
            assert torch.allclose(net.forward(xe.expand(2, -1, -1), train=False)[k], refs[k](xe), atol=1e-5)


def test_stacked_models_must_share_widths():
    a = [[{"type": "affine", "width": 8}, None, {"type": "relu"}]]
    b = [[{"type": "affine", "width": 16}, None, {"type": "relu"}]]
    with pytest.raises(ValueError, match="widths"):
        da.StackedMLP([a, b], 5, 3, seeds=[0, 1], lrs=[1e-3, 1e-3])


def test_models_with_the_same_seed_and_lr_train_identically():
    arch = resolve(da.SPACE, sample_path(da.SPACE, np.random.default_rng(0)))
    val, test = da.train_configs([arch["body"]] * 2, [3e-3, 3e-3], [5, 5], epochs=2)
    assert val[0] == val[1] and test[0] == test[1] and 0.0 <= val[0] <= 1.0


def _tiny_table() -> da.Table:
    raw = {"config": {}, "entries": {"0": {"val": [0.5, 0.7], "test": [0.4, 0.6]},
                                     "1": {"val": [0.9, 0.9], "test": [0.8, 1.0]},
                                     "2": {"val": [0.1, 0.4], "test": [0.2, 0.2]}}}
    return da.Table(raw)


def test_table_queries_return_a_stored_seed_and_judge_by_the_mean():
    t = _tiny_table()
    rng = np.random.default_rng(0)
    assert {t.query((0,), rng) for _ in range(50)} == {0.5, 0.7}
    assert t.test((1,)) == pytest.approx(0.9)
    stds = [np.std([0.5, 0.7], ddof=1), 0.0, np.std([0.1, 0.4], ddof=1)]
    assert t.sigma_retrain == pytest.approx(np.median(stds))
    assert t.spread == pytest.approx(0.9 - 0.5)  # top 1 % of 3 configs = the best one; median test mean 0.5


def test_control_objective_is_scaled_to_mean_zero_and_best_one():
    v = da.control_values()
    arr = np.asarray(list(v.values()))
    assert len(arr) == 1080 and arr.max() == pytest.approx(1.0) and abs(arr.mean()) < 1e-9
    # additive: swapping lr in two architectures changes both scores by the same amount
    a, b = (0, 1, 0, 2, 0), (1, 0, 1, 2, 2, 0, 1, 0)
    assert v[a[:-1] + (2,)] - v[a] == pytest.approx(v[b[:-1] + (2,)] - v[b])
