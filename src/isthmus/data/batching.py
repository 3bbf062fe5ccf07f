"""Batch orders for contrastive learning: G-SimCLR's cluster-interleaved batches, and random ones.

G-SimCLR (Chakraborty et al. 2020, arXiv 2009.12007; code ``ariG23498/G-SimCLR``) gives every item a
pseudo-label, ranks the items inside each pseudo-cluster, sorts the whole data set by that rank and
cuts consecutive batches, so batch ``b`` holds the ``b``-th member of every cluster: with ``K``
clusters and batch size ``B = K`` no two items of one cluster meet in a batch while every cluster
still has members. Once small clusters run out, a batch can straddle two rank groups and hold two
members of one cluster (the authors' "approximately"); :func:`cluster_interleaved_order` keeps that
behaviour. The authors never reshuffle: the order is fixed for every epoch.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["cluster_interleaved_order", "ClusterInterleavedBatchSampler", "RandomBatchSampler"]


def _labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers (cluster ids), got dtype {arr.dtype}")
    return arr


def cluster_interleaved_order(labels: Sequence[int] | np.ndarray, seed: int | None = None) -> np.ndarray:
    """Indices sorted by within-cluster rank, ties by cluster id (see the module doc).

    ``seed`` shuffles the members of each cluster before ranking (``None``: data order).
    """
    y = _labels(labels)
    idx = np.arange(len(y)) if seed is None else np.random.default_rng(seed).permutation(len(y))
    ys = y[idx]
    order = np.argsort(ys, kind="stable")  # members of each cluster, in (shuffled) data order
    sorted_y = ys[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_y)) + 1]
    sizes = np.diff(np.r_[starts, len(sorted_y)])
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - np.repeat(starts, sizes)
    # rank first, then cluster id: batch b holds the b-th member of every cluster (lexsort: last key primary)
    return idx[np.lexsort((ys, rank))]


def _cut(order: np.ndarray, batch_size: int, drop_last: bool) -> list[list[int]]:
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    return [order[i : i + batch_size].tolist() for i in range(0, stop, batch_size)]


class ClusterInterleavedBatchSampler(Sampler[list[int]]):
    """A ``batch_sampler`` for a DataLoader: G-SimCLR's fixed cluster-interleaved batches.

    Every item appears exactly once per epoch (the last batch may be short unless ``drop_last``).
    ``shuffle_batches=True`` reorders the (fixed) batches each epoch from ``seed``; the authors keep
    them in order, the default.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int | None = None,
        shuffle_batches: bool = False,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batches = _cut(cluster_interleaved_order(labels, seed), batch_size, drop_last)
        self.shuffle_batches, self._rng = shuffle_batches, np.random.default_rng(seed)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._rng.permutation(len(self.batches)) if self.shuffle_batches else range(len(self.batches))
        for i in order:
            yield list(self.batches[i])

    def __len__(self) -> int:
        return len(self.batches)


class RandomBatchSampler(Sampler[list[int]]):
    """Random batches: a new permutation every epoch (SimCLR), or one drawn once and kept (``fixed``)."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, fixed: bool = False, drop_last: bool = False) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.fixed, self.drop_last = n, batch_size, fixed, drop_last
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(n)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order if self.fixed else self._rng.permutation(self.n)
        yield from _cut(order, self.batch_size, self.drop_last)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)
