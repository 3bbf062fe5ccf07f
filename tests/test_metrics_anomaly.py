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
