"""Clustering metrics: Hungarian-matched accuracy (ACC), NMI and ARI.

Cluster ids are arbitrary, so accuracy first finds the one-to-one cluster → class mapping that
maximises agreement (Hungarian algorithm on the contingency table). With more clusters than
classes the extra clusters stay unmatched and their samples count as errors; with fewer, some
classes are never predicted. Labels may be ints or strings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from isthmus.metrics._arrays import to_labels

__all__ = ["clustering_accuracy", "nmi", "ari", "cluster_report", "contingency", "batch_same_label_rate"]


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = to_labels(y_true, "y_true"), to_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.size} and {p.size}")
    return t, p


def contingency(y_true: Any, y_pred: Any) -> np.ndarray:
    """Counts ``C[i, j]`` of samples in predicted cluster i (sorted ids) and true class j."""
    t, p = _pair(y_true, y_pred)
    _, t_idx = np.unique(t, return_inverse=True)
    _, p_idx = np.unique(p, return_inverse=True)
    table = np.zeros((p_idx.max() + 1, t_idx.max() + 1), dtype=np.int64)
    np.add.at(table, (p_idx, t_idx), 1)
    return table


def clustering_accuracy(y_true: Any, y_pred: Any) -> float:
    """Best accuracy over one-to-one cluster → class assignments (unsupervised ACC)."""
    table = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def nmi(y_true: Any, y_pred: Any) -> float:
    """Normalized mutual information (arithmetic normalisation, as in scikit-learn)."""
    t, p = _pair(y_true, y_pred)
    return float(normalized_mutual_info_score(t, p))


def ari(y_true: Any, y_pred: Any) -> float:
    """Adjusted Rand index: 1 for identical partitions, ~0 for random ones."""
    t, p = _pair(y_true, y_pred)
    return float(adjusted_rand_score(t, p))


def cluster_report(y_true: Any, y_pred: Any) -> dict[str, float | int]:
    """``{"acc", "nmi", "ari", "n_clusters", "n_classes"}`` for one clustering."""
    t, p = _pair(y_true, y_pred)
    return {
        "acc": clustering_accuracy(t, p),
        "nmi": nmi(t, p),
        "ari": ari(t, p),
        "n_clusters": int(np.unique(p).size),
        "n_classes": int(np.unique(t).size),
    }


def batch_same_label_rate(batches: Any, labels: Any) -> float:
    """Share of within-batch pairs ``i < j`` whose labels agree, pooled over ``batches``.

    In contrastive learning every other item of a batch is a negative, so with true class labels
    this is the false-negative share (G-SimCLR's mechanism): about ``Σ_c p_c²`` for random batches.
    """
    y = to_labels(labels, "labels")
    same = pairs = 0
    for batch in batches:
        idx = np.asarray(batch, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= y.size):
            raise ValueError(f"batch indices must lie in [0, {y.size}), got range [{idx.min()}, {idx.max()}]")
        _, counts = np.unique(y[idx], return_counts=True)
        same += int((counts * (counts - 1) // 2).sum())
        pairs += idx.size * (idx.size - 1) // 2
    if pairs == 0:
        raise ValueError("no batch holds two items: the same-label rate is undefined")
    return same / pairs
