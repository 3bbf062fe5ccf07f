"""Recipe vision-sae (seed 25): ontology/OOD helpers, the nuisance shift and the linear probe.
(The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import numpy as np
import torch

from isthmus.recipes.vision_sae import (CLASS_NAMES, knn_score, linear_probe, nuisance_shift, ontology_distance,
                                        ontology_scores)

torch.set_num_threads(1)


def test_ontology_distance_is_a_tree_metric():
    d = ontology_distance()
    sq, tri, ell = (CLASS_NAMES.index(c) for c in ("square", "triangle", "ellipse"))
    assert d.shape == (9, 9) and (d == d.T).all() and (np.diag(d) == 0).all()
    assert d[sq, tri] == 1 and d[sq, ell] == 2 and d[0, 1] == 2 and d[0, sq] == 3


def test_ontology_scores_recover_a_planted_hierarchy():
    rng = np.random.default_rng(0)
    sup = np.array([[1, 0, 0, 0]] * 5 + [[0, 1, 1, 0]] * 2 + [[0, 1, 0, 1]] * 2, dtype=float)  # class → features
    y = np.repeat(np.arange(9), 40)
    codes = np.hstack([sup[y] * 3, rng.normal(size=(len(y), 9)) * 0.05 + np.eye(9)[y]])
    s = ontology_scores(np.maximum(codes, 0), y)
    assert s["ontology_spearman"] > 0.7 and s["superclass_ari"] == 1.0
    noise = ontology_scores(np.abs(rng.normal(size=(len(y), 20))), y)
    assert noise["ontology_spearman"] < s["ontology_spearman"]


def test_knn_score_is_higher_far_from_training_data():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    s = knn_score(train, torch.tensor([[1.0, 0.05], [0.0, 1.0]]), k=2)
    assert s[1] > s[0]


def test_nuisance_shift_rotates_and_shrinks_but_keeps_shape():
    x = torch.zeros(4, 28, 28)
    x[:, 4:24, 13:15] = 1.0  # a vertical bar
    y = nuisance_shift(x, seed=0)
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert 0.5 * x.sum() < y.sum() < x.sum()  # shrunk to 0.8 -> about 0.64 of the mass
    col_mass = y[:, :, 13:15].sum() / y.sum()
    assert col_mass < 0.6  # rotated by >= 20°: the bar leaves its columns
    assert torch.equal(nuisance_shift(x, seed=0), y)  # deterministic per seed


def test_linear_probe_scores_each_eval_set():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    f = rng.normal(size=(100, 3)) + y[:, None] * 4
    acc = linear_probe(f, y, {"same": (f, y), "flipped": (f, 1 - y)}, seed=0)
    assert acc["same"] > 0.95 and acc["flipped"] < 0.05
