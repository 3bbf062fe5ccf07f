"""Anomaly-detection metrics: AUROC, AUPRC, precision@n, best-F1, point-adjusted F1, hit rate.

Conventions: ``y_true`` is 1 for an anomaly and 0 for normal; ``scores`` are *higher = more
anomalous*. Threshold-free metrics (AUROC, AUPRC) are what papers should lead with. Best-F1 picks
the threshold that maximises F1 *using the labels*, so it is an upper bound on what a deployed
threshold reaches. Point-adjusted F1 (Xu et al. 2018, used by most time-series papers incl.
StackVAE-G) credits a whole labelled segment once any point in it is flagged; it inflates scores
sharply (a random detector can reach high point-adjusted F1 on long segments), so report it
separately and labelled optimistic, never instead of the unadjusted number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from isthmus.metrics._arrays import to_numpy

__all__ = [
    "auroc",
    "auprc",
    "precision_at_n",
    "best_f1",
    "BestF1",
    "f1_at_threshold",
    "point_adjust",
    "point_adjusted_f1",
    "interpretation_hit_rate",
    "anomaly_report",
]


def _binary_pair(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = to_numpy(y_true, "y_true").reshape(-1)
    s = to_numpy(scores, "scores").reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores must have the same length, got {y.size} and {s.size}")
    if y.size == 0:
        raise ValueError("y_true is empty; an anomaly metric over zero samples is undefined")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0 (normal) and 1 (anomaly), got values {np.unique(y)[:5]}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
    return y.astype(np.int64), s


def _need_both(y: np.ndarray, name: str) -> None:
    if y.min() == y.max():
        raise ValueError(f"{name} needs both normal (0) and anomalous (1) samples in y_true")


def auroc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve (0.5 = chance, 1 = every anomaly above every normal)."""
    y, s = _binary_pair(y_true, scores)
    _need_both(y, "auroc")
    return float(roc_auc_score(y, s))


def auprc(y_true: Any, scores: Any) -> float:
    """Area under the precision-recall curve (average precision); chance = anomaly fraction."""
    y, s = _binary_pair(y_true, scores)
    _need_both(y, "auprc")
    return float(average_precision_score(y, s))


def precision_at_n(y_true: Any, scores: Any, n: int | None = None) -> float:
    """Fraction of anomalies among the ``n`` highest scores (``n`` defaults to the anomaly count).

    Ties at the cut-off are broken by a stable sort on the negated scores (first index wins).
    """
    y, s = _binary_pair(y_true, scores)
    n = int(y.sum()) if n is None else int(n)
    if not 1 <= n <= y.size:
        raise ValueError(f"n must be in [1, {y.size}], got {n}")
    top = np.argsort(-s, kind="stable")[:n]
    return float(y[top].mean())


def f1_at_threshold(y_true: Any, scores: Any, threshold: float) -> float:
    """F1 of flagging ``scores > threshold`` (strictly above, as :meth:`AnomalyDetector.predict`)."""
    y, s = _binary_pair(y_true, scores)
    return _f1(y, (s > threshold).astype(np.int64))


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = int((pred & y).sum())
    fp, fn = int((pred & (1 - y)).sum()), int(((1 - pred) & y).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


@dataclass
class BestF1:
    """Result of :func:`best_f1`: the F1, its precision/recall and the threshold (flag ``>= threshold``)."""

    f1: float
    precision: float
    recall: float
    threshold: float


def best_f1(y_true: Any, scores: Any) -> BestF1:
    """The best F1 over every threshold (each distinct score); flags are ``scores >= threshold``.

    Uses the labels to pick the threshold: an oracle upper bound, not a deployable number.
    """
    y, s = _binary_pair(y_true, scores)
    if y.sum() == 0:
        raise ValueError("best_f1 needs at least one anomaly in y_true")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    # Only the last index of a run of equal scores is a real threshold (ties flag together).
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp, fp, thr = tp[last], fp[last], s_sorted[last]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    i = int(np.argmax(f1))
    return BestF1(float(f1[i]), float(precision[i]), float(recall[i]), float(thr[i]))


def _segments(y: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of 1s in a 0/1 vector."""
    edges = np.diff(np.r_[0, y, 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def point_adjust(y_true: Any, pred: Any) -> np.ndarray:
    """Point-adjusted predictions: a labelled segment with any flagged point is flagged whole.

    OPTIMISTIC by construction (see the module docstring); use only to compare with papers.
    """
    y, p = _binary_pair(y_true, pred)
    if not np.isin(p, (0, 1)).all():
        raise ValueError("point_adjust needs 0/1 predictions; threshold the scores first")
    out = p.astype(np.int64).copy()
    for start, end in _segments(y):
        if out[start:end].any():
            out[start:end] = 1
    return out


def point_adjusted_f1(y_true: Any, scores: Any, threshold: float | None = None) -> float:
    """OPTIMISTIC point-adjusted F1 of a time series (labels are ordered in time).

    With ``threshold`` the flags are ``scores > threshold``; without one, the best point-adjusted
    F1 over all thresholds (the number most papers report, an oracle on top of an optimistic
    protocol). Always report the unadjusted :func:`best_f1` beside it.
    """
    y, s = _binary_pair(y_true, scores)
    if y.sum() == 0:
        raise ValueError("point_adjusted_f1 needs at least one anomaly in y_true")
    if threshold is not None:
        return _f1(y, point_adjust(y, (s > threshold).astype(np.int64)))
    # Adjusted, a segment counts as detected from its max score down: lift every point of a
    # segment to the segment's max score, then an ordinary best-F1 sweep is exact.
    lifted = s.copy()
    for start, end in _segments(y):
        lifted[start:end] = s[start:end].max()
    return best_f1(y, lifted).f1


def interpretation_hit_rate(
    contributions: Any, faulty: Sequence[Sequence[int]], k: int | None = None, p: float = 1.5
) -> float:
    """Mean fraction of labelled faulty channels found among each event's top-scored channels.

    ``contributions`` is ``(n_events, n_channels)``: a per-channel score for each labelled event
    (e.g. :meth:`AnomalyDetector.feature_contributions` averaged over the event). ``faulty[i]``
    lists event i's faulty channel indices (SMD's interpretation labels). Event i looks at its
    top ``k`` channels, or ``ceil(p * len(faulty[i]))`` without ``k`` (HitRate@P%, OmniAnomaly's
    definition; P = 150 % by default), and scores ``|top ∩ faulty| / |faulty|``.
    """
    c = to_numpy(contributions, "contributions")
    if c.ndim != 2:
        raise ValueError(f"contributions must be (n_events, n_channels), got shape {c.shape}")
    if len(faulty) != len(c):
        raise ValueError(f"faulty lists {len(faulty)} events but contributions has {len(c)} rows")
    rates = []
    for row, labelled in zip(c, faulty):
        true_set = {int(j) for j in labelled}
        if not true_set:
            raise ValueError("every event needs at least one labelled faulty channel")
        if max(true_set) >= c.shape[1] or min(true_set) < 0:
            raise ValueError(f"faulty channel index out of range [0, {c.shape[1]})")
        top_k = k if k is not None else int(np.ceil(p * len(true_set)))
        top = set(np.argsort(-row, kind="stable")[:top_k].tolist())
        rates.append(len(top & true_set) / len(true_set))
    return float(np.mean(rates))


def anomaly_report(y_true: Any, scores: Any) -> dict[str, float]:
    """AUROC, AUPRC, precision@n_anomalies and best-F1 in one dict (no point adjustment)."""
    bf = best_f1(y_true, scores)
    return {
        "auroc": auroc(y_true, scores),
        "auprc": auprc(y_true, scores),
        "precision_at_n": precision_at_n(y_true, scores),
        "best_f1": bf.f1,
        "best_f1_threshold": bf.threshold,
    }
