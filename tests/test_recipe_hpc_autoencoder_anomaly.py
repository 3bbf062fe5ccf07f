"""Recipe hpc-autoencoder-anomaly (seed 6): the base-rate arm and the per-node thresholds are right.
(The shared parametrized smoke test runs the recipe end to end.)"""

import numpy as np
import pytest

from isthmus.recipes.hpc_autoencoder_anomaly import (
    Settings,
    _arm,
    detection_metrics,
    score_nodes,
)


def test_flag_all_is_the_f1_base_rate():
    y = np.r_[np.zeros(80), np.ones(20)].astype(int)
    m = _arm("flag_all")(Settings(smd=False), 0, {"fleet": {"y": y}}).metrics
    flagged = detection_metrics(y, np.ones(100), 0.5)  # every step predicted anomalous
    assert m["fleet_f1_p99"] == pytest.approx(flagged["f1_p99"])
    assert m["fleet_accuracy_p99"] == pytest.approx(0.2) and m["fleet_flag_nothing_accuracy"] == pytest.approx(0.8)


def test_baseline_thresholds_are_per_node():
    """Two nodes on very different scales: each is thresholded at its own p99, so a clean test row of the
    noisy node is not flagged while a far outlier of the quiet node is."""
    rng = np.random.default_rng(0)
    quiet, loud = rng.normal(0, 0.1, (500, 3)), rng.normal(0, 10, (500, 3))
    test = [np.r_[quiet[:5], [[5.0, 5.0, 5.0]]], loud[:6]]
    nodes = {"train": [quiet, loud], "test": test}
    scores, curves = score_nodes("zscore", nodes, 0, Settings(max_train=0))
    assert curves == []
    assert scores[5] > 0 and (scores[6:] <= np.abs(scores[6:]).max()).all()
    assert (scores[6:] < 0).sum() >= 5  # training-like rows of the loud node stay under its threshold


def test_library_detectors_score_like_the_recipe_copies_they_replaced():
    """PCA and IsolationForest now come from tasks/anomaly_classic; the record result was made with the
    recipe's scikit-learn copies, so the two must agree to round-off."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    from isthmus.recipes.hpc_autoencoder_anomaly import _baseline_scorer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    T = 2 * rng.normal(size=(100, 5))
    sc = StandardScaler().fit(X)
    pca = PCA(n_components=0.9, svd_solver="full").fit(sc.transform(X))
    old_pca = ((sc.transform(T) - pca.inverse_transform(pca.transform(sc.transform(T)))) ** 2).sum(1)
    old_if = -IsolationForest(random_state=3).fit(sc.transform(X)).score_samples(sc.transform(T))
    np.testing.assert_allclose(_baseline_scorer("pca", X, 3)(T), old_pca, atol=1e-10)
    np.testing.assert_allclose(_baseline_scorer("iforest", X, 3)(T), old_if, atol=1e-10)
