"""Black-box surrogate: importance finds the planted features, the tree mimics the black box, rules name them."""

import numpy as np
import pytest

from isthmus.tasks.surrogate import BlackBoxSurrogate, probe_importance


def black_box(X):
    return ((X[:, 3] > 0) & (X[:, 11] > 0.5)).astype(int)  # depends on features 3 and 11 of 30


def test_probe_importance_ranks_the_planted_features_first():
    X = np.random.default_rng(0).normal(size=(400, 30))
    imp = probe_importance(black_box, X, random_state=0)
    assert set(np.argsort(-imp)[:2]) == {3, 11}
    assert imp[[j for j in range(30) if j not in (3, 11)]].max() == 0.0  # the others never change a prediction


def test_surrogate_mimics_and_explains():
    rng = np.random.default_rng(1)
    X, Xte = rng.normal(size=(600, 30)), rng.normal(size=(300, 30))
    s = BlackBoxSurrogate(black_box, top_k=5, max_depth=3, random_state=0).fit(X)
    assert set(s.features_[:2]) == {3, 11}
    assert s.fidelity(Xte) > 0.97
    text = s.rules([f"f{j}" for j in range(30)])
    assert "f3" in text and "f11" in text
    with pytest.raises(ValueError, match="top_k"):
        BlackBoxSurrogate(black_box, top_k=31).fit(X)
    with pytest.raises(ValueError, match="black_box"):
        BlackBoxSurrogate(None).fit(X)
