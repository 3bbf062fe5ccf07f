"""Recipe stacked-ae-clustering (seed 3): the positive-control check and the arms' settings
(smoke: tests/test_recipes_smoke.py)."""

import numpy as np

from isthmus.recipes import get_recipe
from isthmus.recipes.gates import Measured
from isthmus.recipes.stacked_ae_clustering import DATASETS, _estimator, pca_components


def _cells(lin_fvu, pca_fvu=0.1):
    fvu = lambda v: {f"fvu/{ds}": v for ds in DATASETS}  # noqa: E731
    return {"linear_ae": {0: Measured(metrics=fvu(lin_fvu)), 1: Measured(metrics=fvu(pca_fvu))},
            "pca": {0: Measured(metrics=fvu(pca_fvu)), 1: Measured(metrics=fvu(pca_fvu))}}


def test_linear_ae_positive_control():
    recipe = get_recipe("stacked-ae-clustering")()
    s = recipe.settings_for("smoke")
    [ok] = recipe.checks(s, _cells(0.105))
    [bad] = recipe.checks(s, _cells(0.119, 0.1))
    assert ok.ok and not bad.ok and "seed 0" in bad.detail


def test_arms_share_scaling_and_the_linear_ae_matches_pca_size():
    recipe = get_recipe("stacked-ae-clustering")()
    s = recipe.settings_for("record")
    ests = {a: _estimator(a, s, 5, 0, 4) for a in ("cascade_ae", "canonical_ae", "pca", "linear_ae", "raw")}
    assert all(not e.standardise and e.max_train_samples == s.max_train for e in ests.values())
    assert ests["linear_ae"].latent_dim == 4 and ests["linear_ae"].n_hidden == 0
    assert ests["pca"].pca_variance == 0.9 and ests["canonical_ae"].cascade_epochs == s.cascade_epochs[:1]
    rng = np.random.default_rng(0)
    X = rng.random((200, 1)) * np.arange(1, 6) + 0.01 * rng.random((200, 5))  # one direction after min-max
    assert pca_components(X) == 1
    assert pca_components(rng.random((200, 5))) >= 4
