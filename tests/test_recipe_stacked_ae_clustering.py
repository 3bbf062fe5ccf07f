"""Recipe stacked-ae-clustering (seed 3): smoke mode runs end to end; the verdict rule is computed from numbers."""

import json

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.render import write_result
from isthmus.recipes.stacked_ae_clustering import StackedAEClustering


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("stacked-ae-clustering")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    path = write_result(result, tmp_path)
    back = Result.from_dict(json.loads(path.read_text()))
    assert back.recipe == "stacked-ae-clustering" and back.mode == "smoke"
    assert back.verdict in ("reproduced", "partial", "not reproduced")
    assert set(back.baselines) == {"pca", "linear_ae", "raw"}
    for key in ("scene_nl0_acc", "scene_nl1_acc", "scene_nl1_acc_mf", "scene_nl0_nmi", "scene_nl0_ari"):
        assert key in back.metrics and all(key in b for b in back.baselines.values())
    assert all(0.0 <= v <= 1.0 for v in back.metrics["scene_nl0_acc"].values)
    assert all((tmp_path / f).is_file() for f in back.figures)
    assert "scene_maps.png" in back.figures


def _per(ae, pca, lin, raw, ae0, pca0):
    def block(hi, lo):
        return {"scene_nl0_acc": lo, "scene_nl1_acc": hi, "statlog_acc": hi}
    return {"stacked_ae": block(ae, ae0), "pca": block(pca, pca0), "linear_ae": block(lin, pca0), "raw": block(raw, pca0)}


def test_verdict_rule():
    v = StackedAEClustering._verdict
    good, bad = [0.9, 0.91, 0.89], [0.7, 0.72, 0.71]
    assert v(_per(good, bad, bad, bad, bad, bad), [0.0, 1.0], True)[0] == "reproduced"
    # the AE also wins on the linear control: synthetic support is void
    assert v(_per(good, bad, bad, bad, good, bad), [0.0, 1.0], True)[0] == "partial"
    assert v(_per(bad, good, good, good, bad, good), [0.0, 1.0], True)[0] == "not reproduced"
