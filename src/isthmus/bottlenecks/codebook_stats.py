"""Codebook statistics and the k-means used by every discrete bottleneck.

``codebook_stats`` summarises which codes a batch used:

* ``usage``          — fraction of the codebook used at least once in the batch,
* ``perplexity``     — ``exp(H)`` of the empirical code distribution (= codebook size when usage is uniform),
* ``dead_codes``     — number of codes no sample used,
* ``bits_per_latent``— empirical entropy in bits of one latent's code, summed over its code columns
  (an upper bound on the information one latent carries, since it ignores dependence between columns),
* ``bits_capacity``  — ``log2`` of the number of distinct latents the code could express.

Statistics are batch statistics: a code unused in one batch may be used in the next. The VQ
bottlenecks also track codes unused for many *steps* (see ``vq.py``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["codebook_stats", "kmeans"]


def _column_entropy(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Entropy (nats) of the empirical distribution of ``idx`` (N,), and the number of distinct codes."""
    _, counts = torch.unique(idx, return_counts=True)
    p = counts.double() / counts.sum()
    return -(p * p.log()).sum(), counts.numel()


@torch.no_grad()
def codebook_stats(
    indices: torch.Tensor, codebook_size: int, separate_codebooks: bool = False
) -> dict[str, torch.Tensor]:
    """Usage statistics of code ``indices`` of shape (B,) or (B, G).

    With ``separate_codebooks`` each of the G columns has its own codebook of ``codebook_size``
    codes (residual VQ, per-dimension scalar codebooks, key-value heads): usage and perplexity are
    averaged over columns and dead codes summed. Otherwise all columns share one codebook and are pooled.
    """
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    idx = indices.detach().long()
    if idx.dim() == 1:
        idx = idx[:, None]  # (B, 1)
    if idx.dim() != 2 or idx.numel() == 0:
        raise ValueError(f"indices must have shape (B,) or (B, G) with B > 0, got {tuple(indices.shape)}")
    cols = idx if separate_codebooks else idx.reshape(-1, 1)  # (N, columns)
    if int(cols.min()) >= 0 and int(cols.max()) < codebook_size:
        # One scatter for all columns: a per-column torch.unique loop dominated a small DKVB step (32 heads).
        counts = torch.zeros(cols.shape[1], codebook_size, dtype=torch.float64)
        counts.scatter_add_(1, cols.t().contiguous(), torch.ones(cols.t().shape, dtype=torch.float64))
        p = counts / cols.shape[0]  # (columns, K)
        h = -(p * torch.where(p > 0, p, torch.ones_like(p)).log()).sum(1)  # (columns,) nats
        used_t = (counts > 0).sum(1).double()
    else:  # codes outside [0, codebook_size): count what is there
        entropies, used = zip(*(_column_entropy(cols[:, g]) for g in range(cols.shape[1])))
        h = torch.stack(entropies)
        used_t = torch.tensor(used, dtype=torch.float64)
    # Bits of one latent: every column of that latent, whether the codebook is shared or not.
    per_col_bits = h / math.log(2) if separate_codebooks else (h / math.log(2)).expand(idx.shape[1])
    return {
        "usage": (used_t / codebook_size).mean().float(),
        "perplexity": h.exp().mean().float(),
        "dead_codes": (codebook_size - used_t).sum().float(),
        "bits_per_latent": per_col_bits.sum().float(),
        "bits_capacity": torch.tensor(idx.shape[1] * math.log2(codebook_size), dtype=torch.float32),
    }


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on ``x`` (N, d); returns centroids (k, d) and cluster sizes (k,).

    Initial centroids are drawn from ``x`` with the global torch RNG, so the result is
    deterministic given ``torch.manual_seed``. With fewer points than clusters, points are drawn
    with replacement; an empty cluster keeps its previous centroid rather than becoming NaN.
    """
    n = x.shape[0]
    x = x.float()
    pick = torch.randperm(n)[:k] if n >= k else torch.randint(0, n, (k,))
    centroids = x[pick].clone()  # (k, d)
    counts = torch.zeros(k)
    for _ in range(max(1, iters)):
        assign = torch.cdist(x, centroids).argmin(1)  # (N,)
        counts = torch.bincount(assign, minlength=k).float()  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (k, d)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts
