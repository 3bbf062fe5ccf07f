"""Continual-learning metrics from an accuracy matrix.

``acc[t, j]`` = accuracy on task ``j``'s test data after training through stage ``t`` (T × T).
Definitions as in Chaudhry et al. 2018 (arXiv 1801.10112) / the DKVB paper: *final average accuracy*
is the mean of the last row; *forgetting* of task ``j`` is the drop from its best accuracy at any earlier
stage to its accuracy at the end, averaged over all tasks but the last.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["continual_report"]


def continual_report(acc: Any) -> dict[str, float]:
    """``{"final_acc", "forgetting", "last_task_acc"}`` of a (T, T) accuracy matrix (T >= 1)."""
    a = np.asarray(acc, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"accuracy matrix must be square (T, T), got shape {a.shape}")
    t = a.shape[0]
    final = float(a[-1].mean())
    if t == 1:
        return {"final_acc": final, "forgetting": 0.0, "last_task_acc": float(a[-1, -1])}
    drops = [a[j : t - 1, j].max() - a[-1, j] for j in range(t - 1)]  # best before the end minus the end
    return {"final_acc": final, "forgetting": float(np.mean(drops)), "last_task_acc": float(a[-1, -1])}
