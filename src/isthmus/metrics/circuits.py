"""Scoring a ranking of model components (heads, edges) against a ground-truth circuit.

``scores`` are higher-is-more-likely-in-circuit; ``truth`` is a boolean membership vector. Ties are
treated fairly: ROC-AUC counts a tied positive/negative pair as ½, and precision/recall at the true
circuit size k give the *expected* value under a random order of the heads tied at the k-th score.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "precision_recall_at_k", "circuit_report", "roc_curve_points"]


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """P(score of a random true component > score of a random other one), ties ½; NaN if one class is empty."""
    s, y = np.asarray(scores, float).ravel(), np.asarray(truth, bool).ravel()
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + 0.5 * eq)


def precision_recall_at_k(scores: np.ndarray, truth: np.ndarray, k: int | None = None) -> tuple[float, float]:
    """Expected precision and recall of the top-``k`` components (default k = circuit size), ties shared."""
    s, y = np.asarray(scores, float).ravel(), np.asarray(truth, bool).ravel()
    k = int(y.sum()) if k is None else int(k)
    if k <= 0 or y.sum() == 0:
        return float("nan"), float("nan")
    kth = np.sort(s)[::-1][k - 1]
    above, tied = s > kth, s == kth
    take = (k - above.sum()) / tied.sum()  # share of the tied block that makes the cut
    hits = y[above].sum() + take * y[tied].sum()
    return float(hits / k), float(hits / y.sum())


def roc_curve_points(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) over all thresholds, ties in one step."""
    s, y = np.asarray(scores, float).ravel(), np.asarray(truth, bool).ravel()
    if y.all() or not y.any():  # one class empty: no curve
        return np.array([0.0, 1.0]), np.array([float("nan"), float("nan")])
    thr = np.unique(s)[::-1]
    tpr = [0.0] + [float((s[y] >= t).mean()) for t in thr]
    fpr = [0.0] + [float((s[~y] >= t).mean()) for t in thr]
    return np.asarray(fpr), np.asarray(tpr)


def circuit_report(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``roc_auc``, ``precision_at_size``, ``recall_at_size`` (equal by definition when k = circuit size)."""
    p, r = precision_recall_at_k(scores, truth)
    return {"roc_auc": roc_auc(scores, truth), "precision_at_size": p, "recall_at_size": r}
