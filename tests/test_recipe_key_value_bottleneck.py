"""Recipe key-value-bottleneck (seed 24): smoke run, result schema, frozen keys, verdict rule, metrics."""

import json

import numpy as np
import pytest
import torch

from isthmus.metrics.continual import continual_report
from isthmus.recipes import Result, get_recipe
from isthmus.recipes.key_value_bottleneck import build, setting_verdict, toy_data
from isthmus.recipes.render import write_result
from isthmus.tasks.continual import split_classes, train_stream


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("key-value-bottleneck")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "key-value-bottleneck" and back.mode == "smoke"
    assert back.verdict in ("reproduced", "partial", "not reproduced") and back.verdict_reason
    assert list(back.metrics)[0] == "mnist/final_acc"
    assert {"toy/final_acc", "toy/forgetting", "mnist/forgetting"} <= set(back.metrics)
    assert set(back.baselines) == {"linear_probe", "mlp"}
    assert all((tmp_path / f).is_file() for f in back.figures) and back.figures
    assert recipe.verdict_rule


def test_dkvb_keys_and_encoder_stay_frozen_and_only_values_train():
    data = toy_data(0)
    model = build("dkvb", data, "toy", 0)
    keys = model.head.keys.clone()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.values"]
    r = train_stream(model, data["x"], data["y"], data["x_test"], data["y_test"], split_classes(range(8), 2), 5, 16,
                     lambda p: torch.optim.Adam(p, lr=1e-2))
    assert torch.equal(model.head.keys, keys) and r["acc_matrix"].shape == (4, 4)


def test_continual_report():
    a = np.array([[1.0, 0.0], [0.4, 1.0]])
    r = continual_report(a)
    assert r["final_acc"] == pytest.approx(0.7) and r["forgetting"] == pytest.approx(0.6) and r["last_task_acc"] == 1.0
    with pytest.raises(ValueError):
        continual_report(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        split_classes(range(5), 2)


def test_verdict_from_numbers():
    good = {"dkvb/final_acc": [0.9] * 3, "dkvb/forgetting": [0.0] * 3, "linear_probe/final_acc": [0.3] * 3,
            "linear_probe/forgetting": [0.7] * 3, "mlp/final_acc": [0.35] * 3, "mlp/forgetting": [0.6] * 3}
    assert setting_verdict(good, 3)[0]
    assert not setting_verdict({**good, "dkvb/final_acc": [0.38] * 3}, 3)[0]
    assert not setting_verdict({**good, "dkvb/forgetting": [0.8] * 3}, 3)[0]
