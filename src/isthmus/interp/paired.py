"""Two activation stores of the same tokens, streamed as aligned (input, target) batches for transcoders.

``isthmus sae harvest --points blocks.1.hook_resid_mid blocks.1.hook_mlp_out`` writes both stores from
the same forward passes, row for row. :class:`PairedStores` shuffles them with one seed and the same
buffer geometry, so both iterators draw the same rows in the same order — and checks it: every batch's
(sequence, position) ids must agree, else it raises instead of training on mismatched pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from isthmus.interp.store import META_FIELDS, ActivationStore

__all__ = ["PairedStores"]

_META_BYTES = sum(t.itemsize for t in META_FIELDS.values())


class PairedStores:
    """(x, y) batches from an input store and a target store harvested in one pass."""

    def __init__(
        self, inputs: ActivationStore | str | Path, targets: ActivationStore | str | Path, max_memory_mb: float = 512.0
    ) -> None:
        self.inputs = inputs if isinstance(inputs, ActivationStore) else ActivationStore(inputs)
        self.targets = targets if isinstance(targets, ActivationStore) else ActivationStore(targets)
        self.max_memory_mb = max_memory_mb
        a, b = self.inputs, self.targets
        if len(a) != len(b) or list(a.shard_sizes) != list(b.shard_sizes):
            raise ValueError(
                f"{a.path} ({len(a)} rows, shards {list(a.shard_sizes)[:4]}...) and {b.path} ({len(b)} "
                f"rows, shards {list(b.shard_sizes)[:4]}...) are not one harvest: harvest both points in "
                "one `isthmus sae harvest --points IN OUT` run"
            )

    def __len__(self) -> int:
        return len(self.inputs)

    def iter_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0) -> Iterator[tuple[Any, Any]]:
        # Equal buffer rows for both stores (each gets half the memory budget, in its own row size),
        # so their chunking, shuffles and refills coincide.
        sizes = [s.d * s.dtype.itemsize + _META_BYTES + 8 for s in (self.inputs, self.targets)]
        rows = min(int(self.max_memory_mb / 2 * 2**20) // r for r in sizes)
        its = [
            s.iter_batches(batch_size, shuffle=shuffle, seed=seed, max_memory_mb=rows * r / 2**20, with_meta=True)
            for s, r in zip((self.inputs, self.targets), sizes)
        ]
        for a, b in zip(*its):
            if not (torch.equal(a["sequence"], b["sequence"]) and torch.equal(a["positions"], b["positions"])):
                raise ValueError(
                    f"{self.inputs.path} and {self.targets.path} yielded different tokens; they must "
                    "come from one harvest"
                )
            yield a["activations"], b["activations"]
