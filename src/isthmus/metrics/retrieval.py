"""Ranking metrics for retrieval: MRR@k, recall@k and nDCG@k from a similarity matrix.

``scores`` is ``(n_queries, n_docs)`` (higher = more similar). ``relevance`` is either a vector of
one relevant document index per query, ``(n_queries,)`` integers, or a ``(n_queries, n_docs)``
matrix of graded (or 0/1) relevance. Documents are ranked by descending score; ties are broken by
document index (lower first), so results are deterministic. Queries with no relevant document are
left out of the mean (their recall is undefined); if none is left the metric is NaN.

* MRR@k: mean of 1 / rank of the first relevant document within the top k (0 if none),
* recall@k: share of each query's relevant documents found in the top k,
* nDCG@k: DCG with linear gains rel / log2(rank + 1), divided by the ideal DCG at k.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["reciprocal_ranks", "mrr_at_k", "recall_at_k", "ndcg_at_k", "retrieval_report"]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _prepare(scores: Any, relevance: Any, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Relevance matrix reordered by rank ``(nq, n_docs)``, the full relevance matrix, and k clipped."""
    s = _as_numpy(scores).astype(float)
    if s.ndim != 2:
        raise ValueError(f"scores must be (n_queries, n_docs), got shape {s.shape}")
    nq, nd = s.shape
    rel = _as_numpy(relevance)
    if rel.ndim == 1:
        if len(rel) != nq or not np.issubdtype(rel.dtype, np.integer):
            raise ValueError(
                f"a relevance vector must hold one integer doc index per query ({nq}), got {rel.shape} {rel.dtype}"
            )
        if rel.min(initial=0) < 0 or rel.max(initial=0) >= nd:
            raise ValueError(f"relevant doc indices must be in [0, {nd})")
        mat = np.zeros((nq, nd))
        mat[np.arange(nq), rel] = 1.0
    elif rel.shape == s.shape:
        mat = rel.astype(float)
        if (mat < 0).any():
            raise ValueError("relevance grades must be >= 0")
    else:
        raise ValueError(f"relevance must be (n_queries,) indices or the scores' shape {s.shape}, got {rel.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.lexsort((np.broadcast_to(np.arange(nd), s.shape), -s), axis=1)  # by -score, then index
    return np.take_along_axis(mat, order, axis=1), mat, min(k, nd)


def _mean(values: np.ndarray, keep: np.ndarray) -> float:
    return float(values[keep].mean()) if keep.any() else float("nan")


def reciprocal_ranks(scores: Any, relevance: Any, k: int = 10) -> np.ndarray:
    """Per query: 1 / rank of the first relevant document in the top ``k`` (0 when none is there; NaN
    for a query with no relevant document). Their mean is :func:`mrr_at_k`; per-query values are what a
    paired bootstrap over queries resamples."""
    ranked, mat, k = _prepare(scores, relevance, k)
    hit = ranked[:, :k] > 0
    rr = np.where(hit.any(1), 1.0 / (hit.argmax(1) + 1), 0.0)
    return np.where((mat > 0).any(1), rr, np.nan)


def mrr_at_k(scores: Any, relevance: Any, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document in the top ``k`` (0 when none is there)."""
    rr = reciprocal_ranks(scores, relevance, k)
    return _mean(np.nan_to_num(rr), ~np.isnan(rr))


def recall_at_k(scores: Any, relevance: Any, k: int = 10) -> float:
    """Share of each query's relevant documents ranked in the top ``k``, averaged over queries."""
    ranked, mat, k = _prepare(scores, relevance, k)
    n_rel = (mat > 0).sum(1)
    found = (ranked[:, :k] > 0).sum(1)
    return _mean(found / np.maximum(n_rel, 1), n_rel > 0)


def ndcg_at_k(scores: Any, relevance: Any, k: int = 10) -> float:
    """Normalised discounted cumulative gain at ``k`` with linear gains."""
    ranked, mat, k = _prepare(scores, relevance, k)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (ranked[:, :k] * disc).sum(1)
    ideal = (-np.sort(-mat, axis=1)[:, :k] * disc).sum(1)
    return _mean(dcg / np.where(ideal > 0, ideal, 1.0), ideal > 0)


def retrieval_report(scores: Any, relevance: Any, ks: tuple[int, ...] = (1, 10)) -> dict[str, float]:
    """``{"mrr@k", "recall@k", "ndcg@k"}`` for every k in ``ks``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"mrr@{k}"] = mrr_at_k(scores, relevance, k)
        out[f"recall@{k}"] = recall_at_k(scores, relevance, k)
        out[f"ndcg@{k}"] = ndcg_at_k(scores, relevance, k)
    return out
