"""N-way K-shot episodes: the few-shot protocol of Point-MAE (Sharma & Kaul's ModelNet40 splits) and others.

An episode draws ``n_way`` classes, then ``k_shot`` support and ``n_query`` query items per class, without
overlap. Episodes are fixed by their seed alone, so every arm of a comparison is scored on the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isthmus.metrics._arrays import to_labels

__all__ = ["Episode", "few_shot_episode"]


@dataclass(frozen=True)
class Episode:
    classes: np.ndarray  # (n_way,) original labels; episode label i means classes[i]
    support: np.ndarray  # indices into the labelled set, (n_way * k_shot,)
    support_y: np.ndarray  # episode labels 0..n_way-1
    query: np.ndarray  # (n_way * n_query,)
    query_y: np.ndarray


def few_shot_episode(labels: Any, n_way: int, k_shot: int, n_query: int, seed: int) -> Episode:
    """One episode over ``labels`` (a 1-D label vector), fixed by ``seed``."""
    y = to_labels(labels, "labels")
    classes = np.unique(y)
    if n_way < 2 or n_way > classes.size:
        raise ValueError(f"n_way must be in [2, {classes.size}] (classes present), got {n_way}")
    if k_shot < 1 or n_query < 1:
        raise ValueError(f"k_shot and n_query must be >= 1, got {k_shot}, {n_query}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(classes, size=n_way, replace=False))
    sup, qry = [], []
    for c in chosen:
        idx = np.flatnonzero(y == c)
        if idx.size < k_shot + n_query:
            raise ValueError(
                f"class {c!r} has {idx.size} items; an episode needs k_shot + n_query = {k_shot + n_query}"
            )
        pick = rng.permutation(idx)[: k_shot + n_query]
        sup.append(pick[:k_shot])
        qry.append(pick[k_shot:])
    return Episode(
        classes=chosen,
        support=np.concatenate(sup),
        support_y=np.repeat(np.arange(n_way), k_shot),
        query=np.concatenate(qry),
        query_y=np.repeat(np.arange(n_way), n_query),
    )
