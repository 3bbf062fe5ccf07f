"""Turn the data kinds the Trainer accepts into batches, with our own index permutations.

For in-memory tensors, gathering ``x[idx]`` is far cheaper than a DataLoader on CPU, so
tensors/arrays/tables are batched by indexing (the fast default); a map-style
``torch.utils.data.Dataset`` is read with ``dataset[i]`` plus ``default_collate`` in-process, or
through a ``DataLoader`` (workers, pinned memory) fed the same index batches. The permutation of
epoch ``e`` is drawn from a generator seeded by ``(seed, e)`` alone, so a resumed run sees exactly
the batches an uninterrupted one saw; under data parallelism each rank takes every ``world``-th
index of each global batch. ``DataLoader``s and iterable datasets are in :mod:`isthmus.train.loader`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

__all__ = ["BatchSource", "derive_seed", "epoch_permutation"]

Batch = Any  # a Tensor, or a tuple of Tensors (x, y, ...)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys (stable across processes and platforms)."""
    state = np.random.SeedSequence([int(k) % (2**63) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch``: a function of ``(seed, epoch)`` only."""
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, 0, epoch))
    return torch.randperm(n, generator=gen)


def _to_tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "to_numpy"):  # pandas objects
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{where} is a numpy array of dtype object; convert it to a numeric dtype first")
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        # numpy defaults to float64; models train in torch's default float dtype.
        return tensor.to(torch.get_default_dtype()) if tensor.is_floating_point() else tensor
    raise TypeError(f"{where} must be a torch.Tensor or numpy array, got {type(value).__name__}")


def _rank_share(perm: torch.Tensor | None, start: int, stop: int, rank: int, world: int) -> torch.Tensor:
    """Indices of global batch ``[start, stop)`` of the epoch order that rank ``rank`` of ``world`` takes."""
    idx = perm[start:stop] if perm is not None else torch.arange(start, stop)
    return idx[rank::world] if world > 1 else idx


def _collate_tuple(samples: list[Any]) -> Batch:
    """``default_collate``, with list batches (from tuple samples) turned into tuples as models expect."""
    batch = default_collate(samples)
    return tuple(batch) if isinstance(batch, list) else batch


class BatchSource:
    """Uniform index → batch view over a Tensor, array, ``(x, y, ...)``, table (``.X``/``.y``) or Dataset.

    A single tensor gives tensor batches; tuples and labelled tables give tuple batches ``(x, y)``.
    """

    def __init__(
        self, data: Any, device: torch.device | str = "cpu", num_workers: int = 0, pin_memory: bool = False
    ) -> None:
        self.device = torch.device(device)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.dataset: Any = None  # a map-style Dataset (any object with __getitem__ and __len__)
        self.tensors: tuple[torch.Tensor, ...] = ()
        self.single = False
        if isinstance(data, (torch.Tensor, np.ndarray)):
            self.tensors, self.single = (_to_tensor(data, "data"),), True
        elif isinstance(data, (tuple, list)):
            if not data or not all(isinstance(d, (torch.Tensor, np.ndarray)) for d in data):
                raise TypeError("a tuple/list of data must hold tensors or arrays, e.g. (x, y)")
            self.tensors = tuple(_to_tensor(d, f"data[{i}]") for i, d in enumerate(data))
        elif hasattr(data, "X"):
            y = getattr(data, "y", None)
            x = _to_tensor(data.X, "data.X")
            self.tensors, self.single = ((x,), True) if y is None else ((x, _to_tensor(y, "data.y")), False)
        elif isinstance(data, Dataset) or (
            hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (Mapping, str, bytes))
        ):
            self.dataset = data
        else:
            raise TypeError(
                f"cannot train on {type(data).__name__}; pass a Tensor, numpy array, (x, y) tuple, "
                "an object with .X (and .y), or a torch Dataset"
            )
        if self.device.type == "cpu":
            self.tensors = tuple(t.cpu() for t in self.tensors)
        lengths = {len(t) for t in self.tensors}
        if len(lengths) > 1:
            raise ValueError(f"the arrays in the data have different lengths {sorted(lengths)}; they must match")
        if len(self) == 0:
            raise ValueError("the data is empty; pass at least one sample")

    def __len__(self) -> int:
        return len(self.dataset) if self.dataset is not None else len(self.tensors[0])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)

    def epoch_batches(
        self,
        epoch: int,
        start_step: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[tuple[Batch, int]]:
        """``(batch, global batch size)`` for the steps ``start_step..`` of ``epoch``; this rank's share."""
        n = len(self)
        perm = epoch_permutation(n, seed, epoch) if shuffle else None
        bounds = [
            (i * batch_size, min((i + 1) * batch_size, n))
            for i in range(start_step, self.num_batches(batch_size, drop_last))
        ]
        if self.dataset is not None and (self.num_workers > 0 or self.pin_memory):
            index_batches = [_rank_share(perm, a, b, rank, world).tolist() for a, b in bounds]
            loader = DataLoader(
                self.dataset,
                batch_sampler=index_batches,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                collate_fn=_collate_tuple,
            )
            for (a, b), batch in zip(bounds, loader):
                yield self._move(batch), b - a
            return
        for a, b in bounds:
            if world == 1 and perm is None:
                yield self.slice(a, b), b - a
            else:
                yield self.take(_rank_share(perm, a, b, rank, world)), b - a

    def eval_batches(self, batch_size: int) -> Iterator[tuple[Batch, int]]:
        """Every sample once, in order, in batches of ``batch_size``."""
        for a in range(0, len(self), batch_size):
            b = min(a + batch_size, len(self))
            yield self.slice(a, b), b - a

    def take(self, idx: torch.Tensor) -> Batch:
        """The batch of the samples at ``idx`` (a 1-D LongTensor), on the target device."""
        if self.dataset is not None:
            return self._move(self._collate(idx.tolist()))
        if self.single:
            return self._move(self.tensors[0][idx])
        return self._move(tuple(t[idx] for t in self.tensors))

    def slice(self, start: int, stop: int) -> Batch:
        """The contiguous batch ``[start, stop)``: a view, no copy, for tensor data."""
        if self.dataset is not None:
            return self._move(self._collate(list(range(start, stop))))
        if self.single:
            return self._move(self.tensors[0][start:stop])
        return self._move(tuple(t[start:stop] for t in self.tensors))

    def _collate(self, indices: list[int]) -> Batch:
        return _collate_tuple([self.dataset[i] for i in indices])

    def _move(self, batch: Batch) -> Batch:
        return move_batch(batch, self.device)


def move_batch(batch: Batch, device: torch.device) -> Batch:
    """``batch`` (a tensor or tuple of them) on ``device``; CPU batches are returned as they are."""
    if device.type == "cpu":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple):
        return tuple(b.to(device, non_blocking=True) if isinstance(b, torch.Tensor) else b for b in batch)
    return batch
