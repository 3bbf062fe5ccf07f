"""Recipe gradient-noise (seed 10): smoke mode runs end to end; arms differ only by the noise."""

import json

import pytest

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.gradient_noise import load_data, train_once
from isthmus.recipes.render import write_result


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("gradient-noise")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.mode == "smoke" and not back.judged
    assert set(back.baselines) == {"no_noise", "good_init"}
    assert [g.gate.name for g in back.gates] == ["best accuracy", "runs that train"]
    assert back.config["settings"]["eta"] == 0.01 and back.config["settings"]["epochs"] == 2
    for arm in [back.metrics, *back.baselines.values()]:
        assert 0.0 <= arm["best_acc"].mean <= 1.0 and arm["final_acc"].mean <= arm["best_acc"].mean
    assert all((tmp_path / f).is_file() for f in back.figures)


def test_noise_is_the_only_difference_between_arms():
    data, _ = load_data(256, 128)
    a = train_once(data, 0, 0.1, 10.0, 0.0, epochs=1, batch_size=64)
    b = train_once(data, 0, 0.1, 10.0, 0.0, epochs=1, batch_size=64)
    assert a.curves == b.curves and a.metrics == b.metrics
    c = train_once(data, 0, 0.1, 10.0, 1.0, epochs=1, batch_size=64)
    assert c.curves["test_acc"] != a.curves["test_acc"] or c.metrics != a.metrics


def test_positive_control_and_chance_check_drive_inconclusive():
    from isthmus.recipes.gates import Measured

    recipe = get_recipe("gradient-noise")()
    chance = {a: {s: Measured(metrics={"best_acc": 0.11}) for s in range(5)} for a in ("noise", "no_noise")}
    [check] = recipe.checks(recipe.settings_for("quick"), chance)
    assert not check.ok
    chance["noise"][0] = Measured(metrics={"best_acc": 0.6})
    assert recipe.checks(recipe.settings_for("quick"), chance)[0].ok


def test_falls_back_to_digits_without_mnist(monkeypatch, tmp_path):
    monkeypatch.setenv("ISTHMUS_DATA", str(tmp_path))
    import isthmus.data.paths as paths

    monkeypatch.setattr(paths, "data_search_paths", lambda: [tmp_path])
    load_data.cache_clear()
    try:
        (xtr, ytr, xte, yte), desc = load_data(8000, 2000)
    finally:
        load_data.cache_clear()
    assert "digits" in desc and xtr.shape == (1397, 64) and xte.shape == (400, 64)
