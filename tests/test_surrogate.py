"""Black-box surrogate: importance finds the planted features, the tree mimics the black box, rules name them."""

import numpy as np
import pytest

from isthmus.tasks.surrogate import (
    BlackBoxSurrogate, gradient_x_input, precision_at_k, probe_importance, rank_average,
)


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


def test_probe_importance_on_candidates_only_matches_the_full_probe_there():
    X = np.random.default_rng(2).normal(size=(200, 30))
    full = probe_importance(black_box, X, random_state=0, n_repeats=1)
    part = probe_importance(black_box, X, random_state=0, n_repeats=1, features=[3, 11, 5])
    assert part[5] == 0.0 and part[3] > 0.1 and part[11] > 0.1
    assert np.all(part[[j for j in range(30) if j not in (3, 11, 5)]] == 0.0)
    assert full[3] > 0.1 and full[11] > 0.1


def test_gradient_x_input_of_a_linear_model_is_abs_weight_times_input():
    import torch

    w = torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 3.0]])  # class 0 reads x0, x1; class 1 reads x2
    X = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]], dtype=np.float32)  # row 0 → class 0, row 1 → class 1
    g = gradient_x_input(lambda x: x @ w.T, X)
    assert np.allclose(g, [(2 * 1) / 2, (1 * 1) / 2, (3 * 2) / 2])


def test_rank_average_and_precision_at_k():
    a, b = np.array([0.9, 0.1, 0.5, 0.0]), np.array([0.8, 0.7, 0.0, 0.1])
    assert np.allclose(rank_average(a, b), [4.0, 2.5, 2.0, 1.5])
    assert precision_at_k(a, [0, 2], 2) == 1.0
    assert precision_at_k(a, [1, 3], 2) == 0.0
    assert precision_at_k(np.zeros(4), [0], 1) == 1.0  # ties broken by index
    with pytest.raises(ValueError, match="k must"):
        precision_at_k(a, [0], 5)
    with pytest.raises(ValueError, match="one shape"):
        rank_average(a, b[:3])


def test_surrogate_uses_given_importances_and_self_surrogate_has_fidelity_one():
    X = np.random.default_rng(3).normal(size=(300, 30))
    imp = np.zeros(30)
    imp[[3, 11]] = [2.0, 1.0]
    s = BlackBoxSurrogate(black_box, top_k=2, max_depth=4, importances=imp).fit(X)
    assert list(s.features_) == [3, 11]
    assert s.fidelity(X) == 1.0  # a depth-4 tree on the two true features reproduces the black box exactly
    with pytest.raises(ValueError, match="one value per feature"):
        BlackBoxSurrogate(black_box, top_k=2, importances=np.ones(5)).fit(X)
