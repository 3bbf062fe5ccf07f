"""Recipe sae-circuits (seed 1): smoke mode end to end, and the verdict rule from numbers."""

import json

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.render import write_result
from isthmus.recipes.sae_circuits import ARMS, verdict


def test_smoke_writes_a_valid_result(tmp_path, monkeypatch):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    recipe = get_recipe("sae-circuits")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "sae-circuits" and back.verdict_reason and recipe.verdict_rule
    assert {"planted/roc_auc", "induction/roc_auc", "planted/edge_roc_auc", "planted/seconds"} <= set(back.metrics)
    assert set(back.baselines) == set(ARMS) - {"sae_codes"}
    assert back.figures and all((tmp_path / f).is_file() for f in back.figures)


def _numbers(sae, patch=0.9, sae_s=0.1, patch_s=1.0):
    settings = ("planted", "a", "b", "c", "d")
    auc = {arm: dict.fromkeys(settings, patch) for arm in ARMS}
    auc["sae_codes"] = dict.fromkeys(settings, sae)
    secs = {arm: dict.fromkeys(settings, patch_s) for arm in ARMS}
    secs["sae_codes"] = dict.fromkeys(settings, sae_s)
    return auc, secs


def test_verdict_from_numbers():
    assert verdict(*_numbers(0.9))[0] == "reproduced"
    assert verdict(*_numbers(0.9, sae_s=2.0))[0] == "partial"       # slower than patching
    assert verdict(*_numbers(0.85, patch=1.0))[0] == "partial"      # accurate but below patching
    assert verdict(*_numbers(0.6, patch=1.0))[0] == "not reproduced"
