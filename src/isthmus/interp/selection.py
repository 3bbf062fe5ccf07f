"""Task-specific data selection by SAE feature activations (MoNA, Ma et al., arXiv 2503.15573).

Each example is embedded as the **mean over its tokens** of its SAE codes (the mean, not the sum, so
long examples are not favoured); the target task's prototype is the mean of its examples' embeddings;
pool examples are ranked by the **generalized Jaccard** similarity
``J(a, b) = Σ_k min(a_k, b_k) / Σ_k max(a_k, b_k)`` to that prototype and the top share is kept.

Baselines with the same interface: cosine on the same codes, cosine on mean-pooled raw activations
(the earlier "NAS" selector), TF-IDF over token strings, and random.

>>> import torch
>>> generalized_jaccard(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([1.0, 1.0])).tolist()
[0.5, 1.0]
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = [
    "generalized_jaccard",
    "cosine_to",
    "mean_pool",
    "encode_pooled",
    "similarity_scores",
    "select_top",
    "tfidf_scores",
    "bm25_scores",
    "random_scores",
    "on_task_share",
    "SIMILARITIES",
]


def generalized_jaccard(x: torch.Tensor, proto: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise generalized Jaccard of non-negative ``x`` (n, m) with ``proto`` (m,): (n,) in [0, 1]."""
    if (x < 0).any() or (proto < 0).any():
        raise ValueError("generalized Jaccard needs non-negative vectors (e.g. ReLU/TopK SAE codes)")
    p = proto.to(x.dtype).unsqueeze(0)
    return torch.minimum(x, p).sum(1) / torch.maximum(x, p).sum(1).clamp_min(eps)


def cosine_to(x: torch.Tensor, proto: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise cosine of ``x`` (n, m) with ``proto`` (m,)."""
    p = proto.to(x.dtype)
    return (x @ p) / (x.norm(dim=1) * p.norm()).clamp_min(eps)


SIMILARITIES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "jaccard": generalized_jaccard,
    "cosine": cosine_to,
}


def mean_pool(token_values: torch.Tensor, example_ids: torch.Tensor, n_examples: int | None = None) -> torch.Tensor:
    """Mean of the rows of ``token_values`` (N, m) per example id (N,) -> (n_examples, m)."""
    ids = example_ids.long()
    n = int(ids.max()) + 1 if n_examples is None else n_examples
    out = torch.zeros(n, token_values.shape[1], dtype=token_values.dtype)
    out.index_add_(0, ids, token_values)
    counts = torch.bincount(ids, minlength=n).clamp_min(1).to(token_values.dtype)
    return out / counts.unsqueeze(1)


@torch.no_grad()
def encode_pooled(
    sae: Any, acts: torch.Tensor, example_ids: torch.Tensor, n_examples: int | None = None, batch_size: int = 8192
) -> torch.Tensor:
    """Mean-pooled SAE codes: ``sae.encode`` each token's activation (N, d), then :func:`mean_pool`."""
    z = torch.cat([sae.encode(acts[i : i + batch_size].float()) for i in range(0, len(acts), batch_size)])
    return mean_pool(z, example_ids, n_examples)


def similarity_scores(pool: torch.Tensor, target: torch.Tensor, metric: str = "jaccard") -> torch.Tensor:
    """Similarity of each pool embedding (n, m) to the prototype = mean of ``target`` (t, m)."""
    if metric not in SIMILARITIES:
        raise ValueError(f"metric must be one of {sorted(SIMILARITIES)}, got {metric!r}")
    return SIMILARITIES[metric](pool, target.mean(0))


def select_top(scores: torch.Tensor | np.ndarray, share: float | None = None, k: int | None = None) -> np.ndarray:
    """Indices of the ``k`` (or ``ceil(share · n)``) highest scores, best first; ties broken by index."""
    s = np.asarray(scores, dtype=float)
    if k is None:
        if share is None or not 0 < share <= 1:
            raise ValueError(f"give k or a share in (0, 1], got share={share}")
        k = int(np.ceil(share * len(s)))
    order = np.lexsort((np.arange(len(s)), -s))  # stable: highest score first, then lowest index
    return order[:k]


def tfidf_scores(
    pool_docs: Sequence[str], target_docs: Sequence[str], ngram_range: tuple[int, int] = (1, 1)
) -> np.ndarray:
    """Cosine of each pool document's TF-IDF vector to the mean target TF-IDF vector (fit on the pool)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(token_pattern=r"\S+", lowercase=False, ngram_range=ngram_range)
    x = vec.fit_transform(pool_docs)
    proto = np.asarray(vec.transform(target_docs).mean(0)).ravel()
    num = x @ proto
    den = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel()) * max(np.linalg.norm(proto), 1e-12)
    return np.asarray(num).ravel() / np.maximum(den, 1e-12)


def bm25_scores(
    pool_docs: Sequence[str],
    target_docs: Sequence[str],
    ngram_range: tuple[int, int] = (1, 1),
    k1: float = 1.5,
    b: float = 0.75,
) -> np.ndarray:
    """Okapi BM25 of each pool document against the target set as one query (terms weighted by their share of
    the target's term counts); ``ngram_range`` (1, 2) adds word bigrams as terms. IDF from the pool."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(token_pattern=r"\S+", lowercase=False, ngram_range=ngram_range)
    tf = vec.fit_transform(pool_docs).tocsr().astype(float)  # (n, V)
    n = tf.shape[0]
    df = np.asarray((tf > 0).sum(0)).ravel()
    idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
    q = np.asarray(vec.transform(target_docs).sum(0)).ravel()
    q = q / max(q.sum(), 1e-12)
    dl = np.asarray(tf.sum(1)).ravel()
    norm = k1 * (1 - b + b * dl / max(dl.mean(), 1e-12))  # (n,)
    tf = tf.tocoo()
    sat = tf.data * (k1 + 1) / (tf.data + norm[tf.row])
    return np.bincount(tf.row, weights=sat * idf[tf.col] * q[tf.col], minlength=n)


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def on_task_share(selected: Sequence[int] | np.ndarray, labels: Sequence[Any], target: Any) -> float:
    """Fraction of the selected examples whose true label is ``target`` (selection precision)."""
    sel = np.asarray(selected, dtype=int)
    if len(sel) == 0:
        return float("nan")
    return float(np.mean(np.asarray(labels, dtype=object)[sel] == target))
