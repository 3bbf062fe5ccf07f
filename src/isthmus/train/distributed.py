"""Data-parallel training on ``torch.distributed``: what the Trainer needs to run under ``torchrun``.

``torchrun --nproc-per-node N -m isthmus train CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` set; :func:`setup` joins them into one
process group (NCCL on CUDA, gloo on CPU) and the Trainer then

* wraps the model in ``DistributedDataParallel`` (gradients averaged across ranks in backward),
* treats ``TrainerConfig.batch_size`` as the *global* batch: each rank takes an equal share
  ``batch_size / N`` of the same seeded permutation, so N processes see the batches one process
  would and the loss curves agree to float rounding,
* averages the logged loss across ranks, and lets only rank 0 write logs, progress and checkpoints
  (every rank's RNG states are gathered into rank 0's checkpoint for exact resume).

Limits: buffers a model updates itself (EMA codebooks, running statistics) are broadcast from rank 0
before every forward, so they learn from rank 0's share of each batch only and such models follow
the 1-process run approximately, not to rounding. The last incomplete global batch of an epoch is
dropped. Streams (iterable datasets) must shard themselves by rank (see :mod:`isthmus.train.loader`).
Tested here on CPU with gloo; the NCCL/CUDA path is the same code, untested on these machines.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "setup",
    "ddp_wrap",
    "all_mean",
    "barrier",
    "gather_objects",
    "gather_rng",
    "rank_rng",
    "mean_over_ranks",
    "is_main_process",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world == 1`` means no distribution."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on rank 0 or outside a distributed job (use it to guard file writes)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes (once per process); ``DistInfo()`` when not launched so."""
    if not dist.is_available():
        return DistInfo()
    if not dist.is_initialized():
        if _env_world() <= 1:
            return DistInfo()
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_leave)  # we joined the group, so we leave it (an un-destroyed group can abort at exit)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class _LossModule(nn.Module):
    """DDP synchronises gradients of what its ``forward`` computed; our models train through
    ``compute_loss``, so this forward is ``compute_loss``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Any:
        return cast(Any, self.model).compute_loss(batch)


def ddp_wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """A DDP module whose call returns ``model.compute_loss(batch)``; parameters stay ``model``'s own.

    ``find_unused_parameters`` because some bottlenecks own parameters the loss does not touch
    every step (EMA codebooks, gated terms).
    """
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return DistributedDataParallel(_LossModule(model), device_ids=ids, find_unused_parameters=True)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_mean(values: torch.Tensor) -> torch.Tensor:
    """Elementwise mean of ``values`` over ranks (gloo has no AVG, so SUM / world)."""
    out = values.detach().float().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def mean_over_ranks(loss: torch.Tensor, terms: dict[str, Any]) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and its named terms averaged over ranks, in one all-reduce (what rank 0 logs)."""
    keys = list(terms)
    vals = [loss.detach().float().reshape(())]
    vals += [torch.as_tensor(terms[k]).detach().float().reshape(()).to(vals[0].device) for k in keys]
    mean = all_mean(torch.stack(vals)).cpu()
    return float(mean[0]), dict(zip(keys, mean[1:]))


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (JSON-like values and CPU tensors)."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_rng(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Every rank's RNG ``(tensors, meta)`` merged for rank 0's checkpoint (a collective: all ranks call it).

    Rank 0's tensors keep their names, rank r's get a ``rank{r}.`` prefix; the JSON parts come back
    as one list in rank order.
    """
    gathered = gather_objects((tensors, meta))
    merged = dict(tensors)
    for r, (theirs, _) in enumerate(gathered[1:], start=1):
        merged.update({f"rank{r}.{k}": v for k, v in theirs.items()})
    return merged, [m for _, m in gathered]


def rank_rng(
    tensors: dict[str, torch.Tensor], state: dict[str, Any], rank: int
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Rank ``rank``'s saved RNG ``(tensors, meta)`` from a checkpoint, or None when it holds none for it."""
    if rank == 0:
        return tensors, state["rng"]
    ranks = state.get("rng_ranks") or []
    if rank >= len(ranks):
        return None
    prefix = f"rank{rank}."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, ranks[rank]
