"""Recipe ariel (seed 31): grammar recogniser, verdict from numbers, and a smoke run with a schema-valid result."""

import json

import numpy as np

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.ariel import ARMS, is_grammatical, sample_sentence, verdict
from isthmus.recipes.render import write_result


def test_grammar_sampler_and_recogniser_agree():
    rng = np.random.default_rng(0)
    for biased in (True, False):
        assert all(is_grammatical(sample_sentence(rng, biased)) for _ in range(500))
    for bad in (["the", "chair"], ["the", "chair", "is", "on"], ["is", "a", "cup", "on", "the", "bed"],
                ["a", "red", "big", "cup", "is", "red"], ["the", "cup", "sits", "on", "the", "bed", "?"], []):
        assert not is_grammatical(bad)
    assert is_grammatical("is a red cup near the bed ?".split())
    assert is_grammatical("the lamp is small".split())


def _means(a_vu, vae_vu=0.4, ae_vu=0.3, exact=1.0):
    base = {"valid": 0.9, "unique": 0.8, "valid_unique": 0.5}
    return {"ariel": {**base, "valid_unique": a_vu, "recon_exact": exact}, "lm_sampling": base,
            "vae": {**base, "valid_unique": vae_vu}, "vae_bowman": {**base, "valid_unique": 0.0},
            "ae": {**base, "valid_unique": ae_vu}}


def test_verdict_from_numbers():
    assert verdict(_means(0.7))[0] == "reproduced"
    assert verdict(_means(0.7, exact=0.99))[0] == "partial"
    assert verdict(_means(0.35))[0] == "partial"  # beats the AE only
    assert verdict(_means(0.3))[0] == "not reproduced"
    assert "ties" in verdict(_means(0.7))[1]


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("ariel")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "ariel" and back.mode == "smoke" and back.verdict_reason
    assert list(back.metrics)[0] == "valid_unique"
    assert back.metrics["recon_exact"].mean == 1.0  # AriEL's round trip is exact even with a barely trained LM
    assert set(back.baselines) == set(ARMS) - {"ariel"}
    assert back.figures and all((tmp_path / f).is_file() for f in back.figures)
    assert recipe.verdict_rule
