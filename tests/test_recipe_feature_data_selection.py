"""Recipe feature-data-selection (seed 32): smoke run, the planted pool, and the verdict rule."""

import json

import numpy as np
import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.feature_data_selection import GATED, MARGIN, METHODS, MODE_SETTINGS, make_pool, verdict
from isthmus.recipes.render import write_result

torch.set_num_threads(1)


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("feature-data-selection")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "feature-data-selection" and back.verdict_reason and recipe.verdict_rule
    assert list(back.metrics) == ["precision", "distractor_share"]
    assert set(back.baselines) == set(METHODS) - {"mona"}
    for m in [back.metrics, *back.baselines.values()]:
        assert 0.0 <= m["precision"].mean <= 1.0
    assert back.figures == ["selection_precision.png"] and (tmp_path / "selection_precision.png").is_file()
    assert recipe.default_seeds["quick"] >= 2


def test_pool_has_keyword_sharing_distractors_with_equal_unigrams():
    cfg = MODE_SETTINGS["quick"]  # generation only: cheap; enough tokens for the frequency check
    data = make_pool(cfg, 0)
    pool, labels = data["pool"].numpy(), data["labels"]
    assert len(pool) == 2 * cfg["n_topics"] * cfg["per_task"] and data["target"].shape[1] == cfg["length"]
    v = len(data["vocab"])
    vocab_of = lambda task: set(np.unique(pool[labels == task]).tolist())  # noqa: E731
    assert vocab_of(0) == vocab_of(1) != vocab_of(2)  # the distractor uses the target's keywords
    # doubly stochastic chains: target and distractor have near-equal unigram frequencies
    f0 = np.bincount(pool[labels == 0].ravel(), minlength=v) / pool[labels == 0].size
    f1 = np.bincount(pool[labels == 1].ravel(), minlength=v) / pool[labels == 1].size
    assert np.abs(f0 - f1).max() < 0.025  # sampling noise only; expected frequency 1/32
    # ... but different transitions (bigrams)
    big = lambda task: {(a, b) for row in pool[labels == task] for a, b in zip(row[:-1], row[1:])}  # noqa: E731
    assert len(big(0) & big(1)) < 0.5 * len(big(0))


def test_verdict_from_numbers():
    base = {"mona": 0.8, "sae_cosine": 0.7, "raw_cosine": 0.6, "tfidf": 0.6, "tfidf_bigram": 1.0, "random": 0.1}
    assert verdict(base)[0] == "reproduced"
    assert verdict({**base, "tfidf": 0.8 - MARGIN / 2})[0] == "partial"
    assert verdict({**base, **{g: 0.79 for g in GATED}})[0] == "not reproduced"
    assert verdict({**base, "random": 0.78})[0] == "not reproduced"
    assert "raw_cosine 0.600 (beaten)" in verdict(base)[1]
