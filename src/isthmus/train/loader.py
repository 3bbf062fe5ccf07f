"""Streaming data for the Trainer: a user's ``DataLoader`` or an ``IterableDataset``.

Data that does not fit in memory arrives as an iterable dataset (wrapped here in a ``DataLoader``
with ``TrainerConfig.num_workers`` / ``pin_memory``) or as a ready ``DataLoader``. The Trainer
iterates it once per epoch; before each epoch ``set_epoch(epoch)`` is called on the dataset, the
sampler and the batch sampler where they have it (``DistributedSampler``, HF ``datasets``), so their
shuffles depend on the epoch.

What resume means here: a run resumed mid-epoch iterates the epoch again from its start and
skips the batches already trained on. That is exact when the stream yields the same batches
each time an epoch is iterated (deterministic order, or a sampler seeded by ``set_epoch``) and
only approximate otherwise (e.g. workers reading shards in racing order). Epoch-end checkpoints
need no skipping. Under ``torchrun`` a streamed dataset must shard itself by rank (as
``DistributedSampler`` or ``datasets.distributed.split_dataset_by_node`` do); the Trainer cannot
split a stream it only iterates.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from isthmus.train.data import Batch, BatchSource, _collate_tuple, move_batch

__all__ = ["LoaderSource", "make_source", "batch_len"]


def batch_len(batch: Batch) -> int:
    """Number of samples in a batch: the length of its first tensor."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return len(first)


def _set_epoch(obj: Any, epoch: int) -> None:
    fn = getattr(obj, "set_epoch", None)
    if callable(fn):
        fn(epoch)


class LoaderSource:
    """Batches from a ``DataLoader`` (given, or built around an iterable dataset), moved to ``device``."""

    def __init__(
        self,
        data: DataLoader | IterableDataset,
        device: torch.device,
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        world: int = 1,
    ) -> None:
        self.device = device
        self.world = world
        if isinstance(data, DataLoader):
            self.loader = data
        else:
            self.loader = DataLoader(
                data, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, collate_fn=_collate_tuple
            )

    def __len__(self) -> int:
        """Samples per epoch, when the dataset knows it; else ``TypeError`` like any unsized iterable."""
        return len(self.loader.dataset)  # type: ignore[arg-type]

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int | None:
        """Batches per epoch (``len(loader)``), or None for a stream of unknown length."""
        try:
            return len(self.loader)
        except TypeError:
            return None

    def epoch_batches(self, epoch: int, start_step: int, batch_size: int, **_: Any) -> Iterator[tuple[Batch, int]]:
        """This rank's batches of ``epoch`` after the first ``start_step`` (re-read and skipped)."""
        loader = self.loader
        for obj in (
            loader.dataset,
            getattr(loader, "sampler", None),
            getattr(loader, "batch_sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        ):
            _set_epoch(obj, epoch)
        for batch in islice(iter(loader), start_step, None):
            if isinstance(batch, list):
                batch = tuple(batch)
            yield move_batch(batch, self.device), batch_len(batch) * self.world

    def eval_batches(self, batch_size: int) -> Iterator[tuple[Batch, int]]:
        for batch in self.loader:
            if isinstance(batch, list):
                batch = tuple(batch)
            yield move_batch(batch, self.device), batch_len(batch)


def make_source(
    data: Any, device: torch.device, batch_size: int, num_workers: int = 0, pin_memory: bool = False, world: int = 1
) -> BatchSource | LoaderSource:
    """The batch source for ``data``: streamed for loaders and iterable datasets, indexed otherwise."""
    if isinstance(data, (DataLoader, IterableDataset)):
        return LoaderSource(data, device, batch_size, num_workers, pin_memory, world)
    return BatchSource(data, device, num_workers, pin_memory)
