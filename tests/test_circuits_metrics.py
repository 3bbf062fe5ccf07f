"""Node/edge scoring metrics and the code-based scores."""

import math

import numpy as np
import pytest

from isthmus.interp.circuits import edge_scores, node_scores
from isthmus.metrics.circuits import circuit_report, precision_recall_at_k, roc_auc, roc_curve_points


def test_roc_auc_perfect_reversed_and_ties():
    y = np.array([1, 1, 0, 0, 0], bool)
    assert roc_auc([5, 4, 3, 2, 1], y) == 1.0
    assert roc_auc([1, 2, 3, 4, 5], y) == 0.0
    assert roc_auc([1, 1, 1, 1, 1], y) == 0.5
    assert math.isnan(roc_auc([1, 2], np.array([True, True])))
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s, t = rng.integers(0, 4, 30).astype(float), rng.random(30) < 0.3
    assert roc_auc(s, t) == pytest.approx(roc_auc_score(t, s))


def test_precision_recall_at_size_shares_ties():
    y = np.array([1, 1, 0, 0], bool)
    assert precision_recall_at_k([4, 3, 2, 1], y) == (1.0, 1.0)
    p, r = precision_recall_at_k([4, 1, 1, 1], y)  # one sure hit, 1 of 3 tied slots, 1/3 of them true
    assert p == pytest.approx((1 + 1 / 3) / 2) and r == p
    assert set(circuit_report([4, 3, 2, 1], y)) == {"roc_auc", "precision_at_size", "recall_at_size"}
    fpr, tpr = roc_curve_points([4, 3, 2, 1], y)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_node_and_edge_scores_count_positive_only_codes():
    cp = np.array([[0, 1], [2, 1], [3, 1]])   # head 0 shows codes 0,2,3 on positives; head 1 only code 1
    cn = np.array([[0, 1], [0, 1], [0, 1]])
    assert node_scores(cp, cn).tolist() == [2, 0]
    assert node_scores(cp, cn, normalize=True).tolist() == [2 / 3, 0]
    assert node_scores(cp, cn, score="tv").tolist() == pytest.approx([2 / 3, 0])
    e = edge_scores(cp, cn, layers=[0, 1], d_sae=4)
    assert e[0, 1] == 2 and e[1, 0] == 0 and e[0, 0] == 0
