"""Range-aware time-series anomaly metrics, as defined by the TSB-AD benchmark (Liu & Paparrizos,
NeurIPS 2024 D&B): range-based precision/recall/F1 and VUS-ROC / VUS-PR.

Anomalies in a time series are *ranges*; point metrics ignore that, and point-adjusted F1
(:func:`isthmus.metrics.point_adjusted_f1`) over-credits it. These metrics are the ones TSB-AD
ranks detectors by; implemented here from the definitions (TSB-AD's ``basic_metrics.py`` was read
to match its exact choices, listed per function), in vectorised numpy.

Range-based precision/recall (Tatbul et al., NeurIPS 2018) with TSB-AD's settings: flat positional
bias, cardinality factor ``1 / (number of overlapping ranges)``, recall ``alpha = 0.2`` (existence
reward), precision ``alpha = 0``.

VUS (Paparrizos et al., VLDB 2022): each labelled range gets a soft buffer of ``w // 2`` steps on
both sides, weight ``sqrt(1 - distance / w)``; a range-aware TPR/FPR/precision is computed at
``n_thresholds`` score thresholds; VUS-ROC / VUS-PR are the areas under those curves averaged over
buffer lengths ``w = 0 .. max_buffer``. TSB-AD uses ``max_buffer = 2 * sliding_window`` (the
series' period) and 250 thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isthmus.metrics.anomaly import _binary_pair, _need_both

__all__ = ["ranges", "range_precision_recall", "range_f1", "RangeScores", "vus", "VUS"]


def ranges(flags: Any) -> np.ndarray:
    """(k, 2) ``[start, end]`` (inclusive) of each run of 1s in a 0/1 vector."""
    f = np.asarray(flags).astype(np.int64).reshape(-1)
    edges = np.diff(np.r_[0, f, 0])
    return np.c_[np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1]


def _overlap_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each range of ``a``, how many ranges of ``b`` overlap it."""
    if len(b) == 0:
        return np.zeros(len(a), dtype=np.int64)
    # b ranges are sorted and disjoint: those starting at or before a's end, minus those ending before a's start
    return np.searchsorted(b[:, 0], a[:, 1], side="right") - np.searchsorted(b[:, 1], a[:, 0], side="left")


def _range_recall(real: np.ndarray, pred: np.ndarray, alpha: float) -> float:
    """Tatbul's range recall of the ranges in 0/1 vector ``real`` by 0/1 vector ``pred``."""
    rr, pr = ranges(real), ranges(pred)
    if len(rr) == 0:
        return 0.0
    cum = np.r_[0, np.cumsum(pred)]
    hit = cum[rr[:, 1] + 1] - cum[rr[:, 0]]  # predicted points inside each real range
    overlap = hit / (rr[:, 1] - rr[:, 0] + 1)  # flat bias: the fraction covered
    count = _overlap_counts(rr, pr)
    cardinality = np.where(count > 0, 1.0 / np.maximum(count, 1), 0.0)
    existence = (hit > 0).astype(np.float64)
    return float(np.mean(alpha * existence + (1 - alpha) * overlap * cardinality))


@dataclass
class RangeScores:
    """Range-based precision, recall and F1 (and the threshold they were taken at, if searched)."""

    precision: float
    recall: float
    f1: float
    threshold: float | None = None


def range_precision_recall(y_true: Any, pred: Any, alpha: float = 0.2) -> RangeScores:
    """Range-based precision/recall/F1 of 0/1 predictions ``pred`` against labels ``y_true``
    (ordered in time). Recall uses existence weight ``alpha`` (TSB-AD: 0.2), precision none."""
    y, p = _binary_pair(y_true, pred)
    if not np.isin(p, (0, 1)).all():
        raise ValueError(
            "range_precision_recall needs 0/1 predictions; threshold the scores first (or use range_f1 with scores)"
        )
    if y.sum() == 0:
        raise ValueError("range metrics need at least one labelled anomaly in y_true")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    p = p.astype(np.int64)
    recall = _range_recall(y, p, alpha)
    precision = _range_recall(p, y, 0.0)  # no predicted range -> 0, as TSB-AD
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return RangeScores(precision, recall, f1)


def range_f1(y_true: Any, scores: Any, threshold: float | None = None, n_thresholds: int = 100) -> RangeScores:
    """Range-based F1 of flagging ``scores > threshold``; without ``threshold``, the best over
    ``n_thresholds`` evenly spaced thresholds from min to max score (TSB-AD's "R-based-F1"). The
    search uses the labels: an oracle upper bound, not what a deployed threshold reaches."""
    y, s = _binary_pair(y_true, scores)
    if threshold is not None:
        out = range_precision_recall(y, (s > threshold).astype(np.int64))
        out.threshold = float(threshold)
        return out
    best = RangeScores(0.0, 0.0, -1.0)
    for t in np.linspace(s.min(), s.max(), n_thresholds):
        r = range_precision_recall(y, (s > t).astype(np.int64))
        if r.f1 > best.f1:
            best, best.threshold = r, float(t)
    return best


@dataclass
class VUS:
    """Volume under the range-aware ROC and PR surfaces (higher is better, 1 = perfect)."""

    roc: float
    pr: float


def _soft_labels(y: np.ndarray, rr: np.ndarray, w: int) -> np.ndarray:
    """Labels 1 on each range plus a buffer of ``w // 2`` steps each side with weight
    ``sqrt(1 - distance / w)``, summed where buffers meet and capped at 1."""
    out = y.astype(np.float64).copy()
    n, half = len(y), w // 2
    for s, e in rr:
        after = np.arange(e + 1, min(e + half + 1, n))
        out[after] += np.sqrt(1 - (after - e) / w)
        before = np.arange(max(s - half, 0), s)
        out[before] += np.sqrt(1 - (s - before) / w)
    return np.minimum(out, 1.0)


def _merge(rr: np.ndarray, half: int, n: int) -> np.ndarray:
    """Ranges widened by ``half`` each side, overlapping ones merged (TSB-AD's ``new_sequence``)."""
    out = []
    start = max(rr[0, 0] - half, 0)
    for i in range(len(rr) - 1):
        if rr[i, 1] + half < rr[i + 1, 0] - half:
            out.append((start, rr[i, 1] + half))
            start = rr[i + 1, 0] - half
    out.append((start, min(rr[-1, 1] + half, n - 1)))
    return np.asarray(out, dtype=np.int64)


def vus(y_true: Any, scores: Any, max_buffer: int, n_thresholds: int = 250) -> VUS:
    """VUS-ROC and VUS-PR of ``scores`` against time-ordered labels ``y_true``.

    Per buffer length ``w`` in ``0..max_buffer`` and threshold ``t`` (the scores at ``n_thresholds``
    evenly spaced ranks, flags ``score >= t``): with ``P`` labelled points and ``B`` the buffer
    weight of flagged buffer points, ``TP = hits + B`` and ``P' = P + B / 2`` (TSB-AD's mean of the
    hard and the soft positive count); TPR is ``min(TP / P', 1)`` times the fraction of widened
    ranges with any flag, ``FPR = (flags - TP) / (n - P')``, precision ``TP / flags``. ROC area by
    trapezoids from (0, 0) to (1, 1); PR area as the sum of TPR steps times precision. Both are
    averaged over ``w``.
    """
    y, s = _binary_pair(y_true, scores)
    _need_both(y, "vus")
    if int(max_buffer) < 0 or int(n_thresholds) < 1:
        raise ValueError(f"max_buffer must be >= 0 and n_thresholds >= 1, got {max_buffer}, {n_thresholds}")
    n, P = len(y), float(y.sum())
    rr = ranges(y)
    order = np.argsort(-s, kind="stable")
    s_desc = s[order]
    thr = s_desc[np.linspace(0, n - 1, n_thresholds).astype(int)]
    # number flagged at each threshold (score >= t): ties all flagged, as TSB-AD
    m = n - np.searchsorted(np.sort(s), thr, side="left")
    hits = np.r_[0, np.cumsum(y[order])][m]
    rocs, prs = [], []
    for w in range(int(max_buffer) + 1):
        buffer = _soft_labels(y, rr, w) * (1 - y)
        B = np.r_[0, np.cumsum(buffer[order])][m]
        tp = hits + B
        p_new = P + B / 2
        merged = _merge(rr, w // 2, n)
        seg_max = np.array([s[a : b + 1].max() for a, b in merged])
        existence = (seg_max[None, :] >= thr[:, None]).mean(1)
        tpr = np.minimum(tp / p_new, 1.0) * existence
        fpr = (m - tp) / (n - p_new)
        precision = tp / m
        x = np.r_[0.0, fpr, 1.0]
        h = np.r_[0.0, tpr, 1.0]
        rocs.append(float(np.sum(np.diff(x) * (h[1:] + h[:-1]) / 2)))
        prs.append(float(np.sum(np.diff(np.r_[0.0, tpr]) * precision)))
    return VUS(float(np.mean(rocs)), float(np.mean(prs)))
