"""Recipe stackvae-g (seed 13): smoke mode runs end to end; the verdict follows the stated rule."""

import json

import numpy as np
import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.base import summarize
from isthmus.recipes.render import write_result
from isthmus.recipes.stackvae_g import BASELINES, StackVAEGRecipe, _lift, adjacency_recovery

torch.set_num_threads(1)


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("stackvae-g")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "stackvae-g" and back.mode == "smoke" and recipe.verdict_rule
    assert list(back.metrics)[0] == "synth_auroc"
    for key in ("synth_auroc", "synth_best_f1", "synth_pa_best_f1 (optimistic)", "synth_pa_auroc (optimistic)",
                "synth_n_params", "synth_edge_auroc", "synth_topk_precision", "synth_hit_rate@150%"):
        assert key in back.metrics, key
    assert set(back.baselines) == {*BASELINES, "stackvae_g_init0.1", "corr_graph"}
    assert "synth_edge_auroc" in back.baselines["stackvae_g_init0.1"]
    assert back.baselines["dense_vae"]["synth_n_params"].mean > back.metrics["synth_n_params"].mean
    assert back.verdict in ("reproduced", "partial", "not reproduced") and back.config["smd"] == []
    assert sorted(back.figures) == ["adjacency.png", "score_over_time.png"]
    assert all((tmp_path / f).stat().st_size > 0 for f in back.figures)


def _metrics(auroc, params, edge):
    s = lambda v: summarize([v])  # noqa: E731
    return {"synth_auroc": s(auroc), "synth_n_params": s(params), "synth_edge_auroc": s(edge)}


def test_verdict_rule_from_numbers():
    base = {b: _metrics(0.8, 1e5 if b == "dense_vae" else 1e4, 0.5) for b in BASELINES}
    base["corr_graph"] = _metrics(0.0, 0, 0.9)
    v = lambda m: StackVAEGRecipe._verdict(m, base, ["synth"])[0]  # noqa: E731
    assert v(_metrics(0.79, 1e4, 0.85)) == "reproduced"
    assert v(_metrics(0.70, 1e4, 0.85)) == "partial"
    assert v(_metrics(0.79, 5e4, 0.60)) == "partial"
    assert v(_metrics(0.70, 1e4, 0.60)) == "not reproduced"


def test_point_adjust_lift_and_recovery():
    y = np.array([0, 1, 1, 0, 1])
    np.testing.assert_array_equal(_lift(y, np.array([0.1, 0.2, 0.9, 0.3, 0.4])), [0.1, 0.9, 0.9, 0.3, 0.4])
    sg = np.kron(np.eye(2), np.ones((2, 2))).astype(bool) & ~np.eye(4, dtype=bool)
    r = adjacency_recovery(sg.astype(float), sg.astype(float), sg)
    assert r == {"edge_auroc": 1.0, "topk_precision": 1.0}
