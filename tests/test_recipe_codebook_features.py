"""Recipe codebook-features (seed 38): smoke run, the detection/steering metrics, verdict rule from numbers."""

from __future__ import annotations

import json

import torch

from isthmus.interp.toy import make_task
from isthmus.recipes import Result, get_recipe
from isthmus.recipes.codebook_features import code_pr, detection, hidden_states, symbol_positions, verdict
from isthmus.recipes.render import write_result

torch.set_num_threads(1)


def test_smoke_writes_a_valid_result(tmp_path, monkeypatch):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    recipe = get_recipe("codebook-features")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "codebook-features" and back.mode == "smoke" and back.verdict_reason
    assert list(back.metrics)[:4] == ["state_precision", "state_recall", "state_f1", "steer_success"]
    assert {"best_neuron_matched_recall", "random_code_steering", "unsteered", "base_model"} <= set(back.baselines)
    assert back.figures == ["codebook_features.png"] and (tmp_path / "codebook_features.png").is_file()
    for m in ("state_precision", "steer_success"):
        assert 0.0 <= back.metrics[m].mean <= 1.0
    assert recipe.verdict_rule


def test_hidden_state_alignment():
    data = make_task("fsm", 4, seed=1, n_states=5, n_symbols=3, steps=6)
    pos = symbol_positions(data.tokens)
    assert len(pos) == 6 and (data.tokens[:, pos] >= 6).all()  # symbol tokens come after the 5 states + BOS
    torch.testing.assert_close(data.tokens[:, pos + 1] - 1, hidden_states(data))  # next token = entered state


def test_detection_prefers_a_pure_code_over_a_noisy_neuron():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=g)
    codes = (y * 2 + torch.randint(0, 2, (600,), generator=g))[:, None]  # 2 pure codes per state
    pr, rc = code_pr(codes, y, 6, 3)
    assert torch.allclose(pr[0, :2], torch.ones(2)) and 0.3 < float(rc[0, 0]) < 0.7
    neur = (torch.nn.functional.one_hot(y, 3).float() + 0.8 * torch.randn(600, 3, generator=g))  # noisy detectors
    det = detection(codes[:300], y[:300], codes[300:], y[300:], neur[:300], neur[300:], 6, 3)
    assert min(det["code_precision"]) == 1.0
    assert max(det["neuron_precision"]) < 0.95
    assert det["best_codes"].tolist()[0] in (0, 1)
    det2 = detection(codes[:300], y[:300], codes[300:], y[300:], neur[:300], neur[300:], 6, 3, states=[2])
    assert len(det2["code_precision"]) == 1


def test_verdict_from_numbers():
    m = dict(code_precision=0.97, code_recall=0.6, neuron_precision=0.8, neuron_recall=0.7, steer_success=0.7,
             random_code_success=0.1)
    assert verdict(m)[0] == "reproduced"
    assert verdict({**m, "neuron_precision": 0.95})[0] == "partial"           # codes not 0.05 more precise
    assert verdict({**m, "steer_success": 0.4})[0] == "partial"               # below 0.5
    assert verdict({**m, "random_code_success": 0.5})[0] == "partial"        # control too close
    v, why = verdict({**m, "neuron_precision": 0.95, "steer_success": 0.2})
    assert v == "not reproduced" and "random codes" in why
