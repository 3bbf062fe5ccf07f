"""Recipe hpc-autoencoder-anomaly (seed 6): smoke mode runs end to end; the verdict follows the rule."""

import json

import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.base import summarize
from isthmus.recipes.hpc_autoencoder_anomaly import BASELINES, HPCAutoencoderAnomaly
from isthmus.recipes.render import write_result

torch.set_num_threads(1)


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("hpc-autoencoder-anomaly")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "hpc-autoencoder-anomaly" and back.mode == "smoke"
    assert list(back.metrics)[0] == "fleet_auroc"
    assert set(back.metrics) == {"fleet_auroc", "fleet_f1_p99", "fleet_accuracy_p99", "fleet_best_f1"}
    assert set(back.baselines) == set(BASELINES)
    assert back.verdict in ("reproduced", "partial", "not reproduced") and recipe.verdict_rule
    assert not back.config["smd"]


def test_verdict_rule_from_numbers():
    s = lambda v: summarize([v])  # noqa: E731
    good = {"fleet_accuracy_p99": s(0.95), "fleet_auroc": s(0.9)}
    base = {b: {"fleet_auroc": s(0.7)} for b in BASELINES}
    assert HPCAutoencoderAnomaly._verdict(good, base)[0] == "reproduced"
    assert HPCAutoencoderAnomaly._verdict({**good, "fleet_accuracy_p99": s(0.5)}, base)[0] == "partial"
    strong = {b: {"fleet_auroc": s(0.99)} for b in BASELINES}
    assert HPCAutoencoderAnomaly._verdict({**good, "fleet_accuracy_p99": s(0.5)}, strong)[0] == "not reproduced"
