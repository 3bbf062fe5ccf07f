"""One activation store harvested by N ``torchrun`` processes.

``torchrun --nproc-per-node N -m isthmus sae harvest ...`` (or :func:`~isthmus.interp.store.harvest_to_store`
called under torchrun) shares the host's forward passes: every rank reads the whole batch stream but
runs the model only on batches ``rank, rank + N, rank + 2N, ...`` (see
:func:`~isthmus.interp.store.iter_activations`) and writes its own shards into its own hidden temporary
folder. At the end the ranks exchange their shard lists; rank 0 moves every rank's shards into its
folder, writes the one manifest and renames the store into place, and a barrier keeps the other
ranks from opening it before it exists.

**Order rule.** The manifest lists rank 0's shards, then rank 1's, and so on, each rank's rows in
its harvest order (the ``rank`` of each shard is recorded in the manifest). The rows are exactly
those of a 1-process harvest (same tokens kept, same ``max_tokens`` cut, same global ``sequence``
ids); sorting them by (``sequence``, ``positions``) gives the 1-process order. Training shuffles
anyway; ``ActivationStore.read`` returns store order.

The ranks must share a filesystem (the store folder), as they do on one machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isthmus.interp.store import ActivationStore, StoreWriter
from isthmus.train.distributed import DistInfo, barrier, gather_objects, setup

__all__ = ["join", "close_across_ranks"]


def join(model: nn.Module) -> DistInfo:
    """This process's place in a torchrun job (joining the process group on the host's device)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    info = setup(device)
    if info.active and device.type == "cuda":
        torch.cuda.set_device(device)  # object collectives run on the current CUDA device under NCCL
    return info


def close_across_ranks(writer: StoreWriter, info: DistInfo) -> ActivationStore:
    """Merge every rank's shards into one store at ``writer.path`` (a collective: all ranks call it)."""
    writer.flush()
    parts: list[dict[str, Any]] = gather_objects(
        {"tmp": str(writer.tmp), "shards": writer.shards, "row_shape": writer.row_shape}
    )
    if info.is_main:
        try:
            _merge_into(writer, parts)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            barrier()
    else:
        barrier()  # rank 0 has moved our shards out and published the store
        writer.abort()  # our temporary folder, now empty
    return ActivationStore(writer.path)


def _merge_into(writer: StoreWriter, parts: list[dict[str, Any]]) -> None:
    """Rank 0: adopt the other ranks' shards (renumbered after its own) and their row count."""
    shapes = {tuple(p["row_shape"]) for p in parts if p["row_shape"] is not None}
    if len(shapes) > 1:
        raise ValueError(
            f"the ranks harvested rows of different shapes {sorted(shapes)}; the host model or "
            "hook point differs between ranks"
        )
    shards: list[dict[str, Any]] = []
    for rank, part in enumerate(parts):
        for s in part["shards"]:
            name = f"shard_{len(shards):05d}.safetensors"
            if rank:  # rank 0's own shards come first and already carry these names
                os.replace(Path(part["tmp"]) / s["file"], writer.tmp / name)
            shards.append({"file": name, "rows": s["rows"], "rank": rank})
    writer.shards, writer.n_rows = shards, sum(s["rows"] for s in shards)
    writer.row_shape = writer.row_shape or (next(iter(shapes)) if shapes else None)
    writer.meta.update(ranks=len(parts), row_order="by rank; sort by (sequence, positions) for harvest order")
