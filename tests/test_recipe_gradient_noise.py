"""Recipe gradient-noise (seed 10): smoke mode runs end to end and writes a schema-valid result."""

import json

import numpy as np
import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.gradient_noise import GradientNoise, load_data, train_once
from isthmus.recipes.render import write_result


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("gradient-noise")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    path = write_result(result, tmp_path)
    back = Result.from_dict(json.loads(path.read_text()))
    assert back.recipe == "gradient-noise" and back.mode == "smoke"
    assert back.verdict in ("reproduced", "partial", "not reproduced")
    assert set(back.metrics) >= {"best_acc", "final_acc", "final_train_loss", "trained"}
    assert set(back.baselines) == {"no_noise", "good_init_no_noise"}
    assert back.config["grid_lr_clip_eta"] == [[0.1, 10.0, 0.01]]
    assert all((tmp_path / f).is_file() for f in back.figures)
    assert recipe.verdict_rule


def test_noise_is_the_only_difference_between_arms():
    data, _ = load_data(256, 128)
    cfg = {"epochs": 1, "batch_size": 64}
    a = train_once(data, 0, 0.1, 10.0, 0.0, cfg)
    b = train_once(data, 0, 0.1, 10.0, 0.0, cfg)
    assert a["curve"] == b["curve"] and a["final_train_loss"] == b["final_train_loss"]
    c = train_once(data, 0, 0.1, 10.0, 1.0, cfg)
    assert c["final_train_loss"] != a["final_train_loss"]


def test_verdict_rule_from_numbers():
    up = {"best_acc": [0.9] * 5, "trained": [1.0] * 5}
    down = {"best_acc": [0.11] * 5, "trained": [0.0] * 5}
    assert GradientNoise._verdict(up, down, 5)[0] == "reproduced"
    assert GradientNoise._verdict(down, up, 5)[0] == "not reproduced"
    half = {"best_acc": [0.9] * 5, "trained": [0.0] * 5}
    assert GradientNoise._verdict(half, down, 5)[0] == "partial"
    assert GradientNoise._combine(["reproduced", "partial"]) == "partial"


def test_falls_back_to_digits_without_mnist(monkeypatch, tmp_path):
    monkeypatch.setenv("ISTHMUS_DATA", str(tmp_path))
    import isthmus.data.paths as paths

    monkeypatch.setattr(paths, "data_search_paths", lambda: [tmp_path])
    (xtr, ytr, xte, yte), desc = load_data(8000, 2000)
    assert "digits" in desc and xtr.shape == (1397, 64) and xte.shape == (400, 64)
