"""Recipe prototype-net (seed 5): smoke mode runs end to end; the verdict comes from the numbers."""

import json

import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.prototype_net import INTERP_KEYS, PrototypeNet
from isthmus.recipes.render import write_result


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("prototype-net")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "prototype-net" and back.mode == "smoke"
    assert back.verdict in ("reproduced", "partial", "not reproduced") and recipe.verdict_rule
    assert next(iter(back.metrics)) == "accuracy"
    assert set(back.metrics) >= {"accuracy", "recon_mse", *INTERP_KEYS}
    assert set(back.baselines) == {"plain_classifier", "no_r1_r2"}
    assert set(back.baselines["no_r1_r2"]) >= set(INTERP_KEYS)
    assert "accuracy" in back.baselines["plain_classifier"]
    assert back.figures == ["prototypes.png"] and (tmp_path / "prototypes.png").stat().st_size > 0
    assert 0.0 <= back.metrics["proto_judge_confidence"].mean <= 1.0


def _arms(acc, plain, conf, conf_abl, dist, dist_abl):
    return {"ours": {"accuracy": acc, "proto_judge_confidence": conf, "proto_nn_dist_ratio": dist},
            "no_r1_r2": {"accuracy": acc, "proto_judge_confidence": conf_abl, "proto_nn_dist_ratio": dist_abl},
            "plain_classifier": {"accuracy": plain}}


def test_verdict_rule():
    v = PrototypeNet._verdict
    hi, lo = [0.95, 0.96, 0.955], [0.5, 0.55, 0.52]
    near, far = [1.0, 1.2, 1.1], [40.0, 50.0, 45.0]
    assert v(_arms(hi, hi, hi, lo, near, far))[0] == "reproduced"
    assert v(_arms(lo, hi, hi, lo, near, far))[0] == "partial"  # accuracy parity fails
    assert v(_arms(hi, hi, hi, hi, near, far))[0] == "partial"  # confidence does not drop
    assert v(_arms(lo, hi, lo, hi, far, near))[0] == "not reproduced"


def test_prototype_report_ranges():
    from isthmus.recipes.prototype_net import prototype_report, train_judge, train_prototype

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 16, generator=g), torch.randint(0, 10, (64,), generator=g)
    model, judge = train_prototype(x, y, 0, 1, True), train_judge(x, y, 1)
    rep = prototype_report(model, judge, x, x[:16])
    assert rep["decoded"].shape == (15, 16) and 0 <= rep["proto_judge_agreement"] <= 1
    assert rep["proto_nn_dist_ratio"] > 0
