"""Recipe auto-interp (seed 18): smoke run, verdict rule from numbers, and the arm helpers."""

import json

import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.auto_interp import ARMS, topk_sparsify, verdict
from isthmus.recipes.render import write_result

torch.set_num_threads(1)


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("auto-interp")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "auto-interp" and back.mode == "smoke" and back.verdict_reason
    assert {"detection", "fuzzing", "interp", "sae_fvu"} <= set(back.metrics)
    assert set(back.baselines) == set(ARMS) - {"sae"}
    for arm in back.baselines.values():
        assert 0.0 <= arm["detection"].mean <= 1.0 and 0.0 <= arm["fuzzing"].mean <= 1.0
    assert back.figures == ["auto_interp.png"] and (tmp_path / "auto_interp.png").is_file()
    assert recipe.verdict_rule and any("sae unit" in n for n in back.notes)


def _means(sae, neurons, topk, rand):
    return {"sae": {"interp": sae}, "neurons": {"interp": neurons}, "topk_neurons": {"interp": topk},
            "random_sae": {"interp": rand}}


def test_verdict_from_numbers():
    assert verdict(_means(0.8, 0.6, 0.7, 0.55), [True, True])[0] == "reproduced"
    assert verdict(_means(0.8, 0.6, 0.78, 0.55), [True, True])[0] == "partial"       # top-k neurons close
    assert verdict(_means(0.8, 0.6, 0.7, 0.55), [True, False])[0] == "not reproduced"  # lost on a seed
    assert verdict(_means(0.62, 0.6, 0.5, 0.5), [True, True])[0] == "not reproduced"  # gap below margin
    v, why = verdict(_means(float("nan"), 0.6, 0.5, 0.5), [True])
    assert v == "not reproduced" and "undefined" in why


def test_topk_sparsify_keeps_k_largest_nonnegative():
    x = torch.tensor([[[0.5, -0.1, 2.0, 1.0]]])
    assert topk_sparsify(x, 2).tolist() == [[[0.0, 0.0, 2.0, 1.0]]]
    assert topk_sparsify(-x.abs(), 1).abs().sum() == 0  # negative winners are clamped to 0
