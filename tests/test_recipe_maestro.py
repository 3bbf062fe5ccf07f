"""Recipe maestro (seed 28): smoke mode runs end to end; helpers and the verdict rule."""

import json

import torch
from torch import nn

from isthmus.nn import LowRankLinear, set_rank_fraction, svd_truncated_copy
from isthmus.recipes import Result, get_recipe
from isthmus.recipes.maestro import FRACTIONS, Maestro, spectrum_data
from isthmus.recipes.render import write_result


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("maestro")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "maestro" and back.mode == "smoke"
    assert back.verdict in ("reproduced", "partial", "not reproduced") and recipe.verdict_rule
    assert next(iter(back.metrics)) == "mean_trunc_acc"
    assert {f"acc@{p:g}" for p in FRACTIONS} | {"linear_max_angle_deg", "linear_mse_gap"} <= set(back.metrics)
    assert set(back.baselines) == {"svd_truncation", "no_ordered_dropout", "plain_linear_ae"}
    assert "acc@0.1" in back.baselines["svd_truncation"] and "linear_max_angle_deg" in back.baselines["plain_linear_ae"]
    assert back.figures == ["maestro.png"] and (tmp_path / "maestro.png").stat().st_size > 0


def test_spectrum_data_has_the_promised_covariance():
    x, q = spectrum_data(20000, 0)
    cov = (x.T @ x) / len(x)
    var = torch.diagonal(q.T @ cov @ q)
    assert torch.allclose(var[:4], 0.85 ** torch.arange(4.0), rtol=0.05)


def test_rank_fraction_and_svd_truncation():
    torch.manual_seed(0)
    net = nn.Sequential(LowRankLinear(in_dim=8, out_dim=6), nn.ReLU(), nn.Linear(6, 3))
    assert set_rank_fraction(net, 0.5) == {"0": 3}
    x = torch.randn(4, 8)
    torch.testing.assert_close(net.eval()(x), net[2](torch.relu(net[0](x, rank=3))))
    set_rank_fraction(net, None)
    dense = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    full = svd_truncated_copy(dense, 1.0, exclude=("2",))
    assert isinstance(full[0], LowRankLinear) and isinstance(full[2], nn.Linear) and isinstance(dense[0], nn.Linear)
    torch.testing.assert_close(full(x), dense(x), atol=1e-5, rtol=1e-5)
    assert svd_truncated_copy(dense, 0.2)[0].rank == 2  # ceil(0.2 * 6)


def _arms(angle, ours, svd, no_od):
    return {"maestro": {"linear_max_angle_deg": angle, "mean_trunc_acc": ours},
            "plain_linear_ae": {"linear_max_angle_deg": [80.0, 80.0]},
            "svd_truncation": {"mean_trunc_acc": svd}, "no_ordered_dropout": {"mean_trunc_acc": no_od}}


def test_verdict_rule():
    v = Maestro._verdict
    good, bad = [0.9, 0.91], [0.5, 0.52]
    assert v(_arms([2.0, 3.0], good, bad, bad))[0] == "reproduced"
    assert v(_arms([2.0, 3.0], good, bad, good))[0] == "partial"  # no better than without ordered dropout
    assert v(_arms([40.0, 50.0], good, bad, bad))[0] == "partial"
    assert v(_arms([40.0, 50.0], bad, good, good))[0] == "not reproduced"
