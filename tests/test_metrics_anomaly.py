"""Anomaly metrics on hand-computed cases."""

import numpy as np
import pytest

from isthmus.metrics.anomaly import (
    anomaly_report, auprc, auroc, best_f1, f1_at_threshold, interpretation_hit_rate, point_adjust,
    point_adjusted_f1, precision_at_n,
)


def test_auroc_hand_case():
    # pairs (anomaly, normal): 2 anomalies x 2 normals; anomaly 0.9 beats both, 0.4 beats 0.1 only -> 3/4
    y = [0, 1, 0, 1]
    s = [0.1, 0.9, 0.5, 0.4]
    assert auroc(y, s) == pytest.approx(0.75)
    assert auroc(y, [-v for v in s]) == pytest.approx(0.25)


def test_auprc_hand_case():
    # ranked: 0.9(1) 0.5(0) 0.4(1) 0.1(0): AP = (1/1 + 2/3) / 2
    assert auprc([0, 1, 0, 1], [0.1, 0.9, 0.5, 0.4]) == pytest.approx((1 + 2 / 3) / 2)


def test_precision_at_n():
    y = [0, 1, 0, 1, 0]
    s = [0.1, 0.9, 0.8, 0.4, 0.0]
    assert precision_at_n(y, s) == pytest.approx(0.5)  # top-2: 0.9(1), 0.8(0)
    assert precision_at_n(y, s, n=1) == 1.0
    assert precision_at_n(y, s, n=4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="n must be"):
        precision_at_n(y, s, n=0)


def test_best_f1_sweeps_thresholds_and_handles_ties():
    y = [0, 1, 0, 1, 1]
    s = [0.1, 0.9, 0.5, 0.4, 0.4]
    bf = best_f1(y, s)
    # threshold 0.4 flags 0.9, 0.5, 0.4, 0.4: tp=3 fp=1 -> P=.75 R=1 F1=6/7; threshold 0.9: F1=.5
    assert bf.f1 == pytest.approx(6 / 7)
    assert bf.threshold == pytest.approx(0.4)
    assert bf.precision == pytest.approx(0.75) and bf.recall == 1.0
    assert f1_at_threshold(y, s, 0.45) == pytest.approx(2 * 1 / (2 + 1 + 2))


def test_point_adjust_credits_whole_segment():
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    pred = np.array([0, 0, 1, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(point_adjust(y, pred), [0, 1, 1, 1, 0, 1, 0, 0, 0])
    s = pred.astype(float)
    # adjusted at 0.5: tp=3 fp=1 fn=2 -> 6/9; unadjusted tp=1 fp=1 fn=4 -> 2/7
    assert point_adjusted_f1(y, s, threshold=0.5) == pytest.approx(6 / 9)
    assert f1_at_threshold(y, s, 0.5) == pytest.approx(2 / 7)
    # best adjusted over thresholds >= the unadjusted best, and equals the brute-force sweep
    scores = np.array([0.1, 0.2, 0.8, 0.3, 0.1, 0.6, 0.5, 0.2, 0.0])
    brute = max(point_adjusted_f1(y, scores, threshold=t - 1e-9) for t in np.unique(scores))
    assert point_adjusted_f1(y, scores) == pytest.approx(brute)
    assert point_adjusted_f1(y, scores) >= best_f1(y, scores).f1


def test_interpretation_hit_rate():
    c = np.array([[0.5, 0.1, 0.3, 0.1], [0.0, 0.2, 0.1, 0.7]])
    faulty = [[0, 1], [3]]
    # event 0: top ceil(1.5*2)=3 -> {0,2,1|3 tie→1} -> hits {0,1} = 1.0; event 1: top 2 {3,1} -> 1.0
    assert interpretation_hit_rate(c, faulty) == pytest.approx(1.0)
    # k=1: event 0 top {0} -> 1/2; event 1 top {3} -> 1
    assert interpretation_hit_rate(c, faulty, k=1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="out of range"):
        interpretation_hit_rate(c, [[9], [0]])


def test_bad_inputs_and_report():
    with pytest.raises(ValueError, match="both normal"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="only 0"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="non-finite"):
        auroc([0, 1], [0.1, np.nan])
    rep = anomaly_report([0, 1, 0, 1], [0.1, 0.9, 0.5, 0.4])
    assert set(rep) >= {"auroc", "auprc", "precision_at_n", "best_f1"}


# ---- range-based precision/recall and VUS (TSB-AD definitions), hand-computed ---------------------
from isthmus.metrics import range_f1, range_precision_recall, vus  # noqa: E402


def test_range_precision_recall_by_hand():
    # label range [1, 3]; predicted ranges [1, 1] and [6, 7]
    r = range_precision_recall([0, 1, 1, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 1, 1])
    # recall: 0.2 * existence(1) + 0.8 * covered(1/3) * cardinality(1); precision: mean(1, 0)
    assert r.recall == pytest.approx(0.2 + 0.8 / 3)
    assert r.precision == pytest.approx(0.5)
    assert r.f1 == pytest.approx(2 * 0.5 * r.recall / (0.5 + r.recall))
    # two predicted ranges inside one label range: cardinality 1/2 halves the overlap reward
    r = range_precision_recall([1, 1, 1, 1, 0], [1, 0, 1, 0, 0])
    assert r.recall == pytest.approx(0.2 + 0.8 * 0.5 * 0.5) and r.precision == pytest.approx(1.0)
    # no flags: precision and F1 are 0, not NaN
    assert range_precision_recall([0, 1, 0], [0, 0, 0]).f1 == 0.0
    with pytest.raises(ValueError, match="0/1 predictions"):
        range_precision_recall([0, 1, 0], [0, 0.5, 0])


def test_range_f1_threshold_and_search():
    y = [0, 0, 1, 1, 0, 0]
    s = [0.1, 0.2, 0.9, 0.8, 0.3, 0.0]
    assert range_f1(y, s, threshold=0.5).f1 == pytest.approx(1.0)
    best = range_f1(y, s)
    assert best.f1 == pytest.approx(1.0) and 0.3 <= best.threshold < 0.8
    assert range_f1(y, s, threshold=0.85).recall == pytest.approx(0.2 + 0.8 * 0.5)


def test_vus_by_hand():
    y = np.array([0, 0, 1, 0, 0])
    s = np.array([0.0, 0.1, 0.2, 0.9, 0.3])  # the anomaly ranks third; step 3 (next to it) ranks first
    # no buffer (max_buffer 0 and 1 both give w // 2 = 0): ordinary ROC / PR areas, 0.5 and 1/3
    v0 = vus(y, s, max_buffer=0)
    assert (v0.roc, v0.pr) == (pytest.approx(0.5), pytest.approx(1 / 3))
    # w = 2: steps 1 and 3 get buffer weight b = sqrt(1/2). Thresholds flag {3}, {3,4}, {2,3,4}, +1, +0.
    b = np.sqrt(0.5)
    p1 = 1 + b / 2                                     # P' while only step 3's buffer is flagged
    tpr1, fpr1, prec1 = b / p1, (1 - b) / (5 - p1), b / 1
    fpr2 = (2 - b) / (5 - p1)
    prec3 = (1 + b) / 3                                # {2,3,4}: TP = 1 + b, recall capped at 1
    p4 = 1 + b                                         # {1,2,3,4}: both buffer steps flagged
    fpr4, fpr5 = (4 - (1 + 2 * b)) / (5 - p4), (5 - (1 + 2 * b)) / (5 - p4)
    roc2 = fpr1 * tpr1 / 2 + (fpr2 - fpr1) * tpr1 + (1 - fpr2) * 1.0  # fpr3 == fpr2
    pr2 = tpr1 * prec1 + (1 - tpr1) * prec3
    assert fpr4 < fpr5 < 1
    v2 = vus(y, s, max_buffer=2)
    assert v2.roc == pytest.approx((0.5 + 0.5 + roc2) / 3)
    assert v2.pr == pytest.approx((1 / 3 + 1 / 3 + pr2) / 3)
    perfect = vus(y, np.array([0.0, 0.1, 0.9, 0.2, 0.3]), max_buffer=4)
    assert (perfect.roc, perfect.pr) == (pytest.approx(1.0), pytest.approx(1.0))
