"""Recipe top-afa-sae (seed 29): smoke run, verdict rule from numbers, and the top-AFA selection rule."""

import json
import math

import torch

from isthmus.bottlenecks import BOTTLENECKS
from isthmus.recipes import Result, get_recipe
from isthmus.recipes.render import write_result
from isthmus.recipes.top_afa_sae import MODE_SETTINGS, topk_frontier, verdict

torch.set_num_threads(1)


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("top-afa-sae")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "top-afa-sae" and back.mode == "smoke" and back.verdict_reason
    assert list(back.metrics)[:4] == ["nmse", "l0", "mean_max_cos", "recall"]
    ks = MODE_SETTINGS["smoke"]["ks"]
    assert {f"topk_{k}" for k in ks} <= set(back.baselines)
    assert any(b.startswith("batchtopk_") for b in back.baselines)
    assert back.figures == ["nmse_vs_l0.png"] and (tmp_path / "nmse_vs_l0.png").is_file()
    assert recipe.verdict_rule


def _means(afa_nmse, afa_l0, afa_cos):
    m = {f"topk_{k}": {"nmse": 0.4 / k, "l0": float(k), "mean_max_cos": 0.9 if k == 4 else 0.7} for k in (2, 4, 8, 16)}
    m["top_afa"] = {"nmse": afa_nmse, "l0": afa_l0, "mean_max_cos": afa_cos}
    return m


def test_verdict_from_numbers():
    ks = (2, 4, 8, 16)
    assert topk_frontier(4.0, [(2, 0.2), (4, 0.1), (8, 0.05)]) == 0.1
    assert math.isnan(topk_frontier(20.0, [(2, 0.2), (8, 0.05)]))
    assert verdict(_means(0.1, 4.0, 0.89), ks)[0] == "reproduced"   # on the frontier, recovery matched
    assert verdict(_means(0.1, 4.0, 0.5), ks)[0] == "partial"       # recovery lost
    assert verdict(_means(0.2, 4.0, 0.89), ks)[0] == "partial"      # NMSE 2x the frontier
    assert verdict(_means(0.2, 4.0, 0.5), ks)[0] == "not reproduced"
    v, why, _ = verdict(_means(0.001, 40.0, 0.5), ks)                # L0 outside the sweep: not shown
    assert v == "not reproduced" and "outside the TopK sweep" in why


def test_topafa_keeps_prefix_whose_norm_matches_input():
    bn = BOTTLENECKS.build("sae_topafa", {"latent_dim": 6, "afa_coeff": 0.0})
    h = torch.tensor([[3.0, 0.0, 4.0, 0.1, -1.0, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    out = bn(h, input_norm=torch.tensor([5.0, 2.0]))
    # sample 0: sorted 4, 3, .2, .1 -> cumulative norms 4, 5, 5.004, ... -> k = 2 (closest to 5)
    assert out.codes.tolist() == [2, 4] and out.latent[0].tolist() == [3.0, 0, 4.0, 0, 0, 0]
    assert int((out.latent[1] != 0).sum()) == 4  # sqrt(4) = 2
