"""What :func:`~isthmus.interp.sae_train.train_sae` adds to :mod:`isthmus.train.distributed` under ``torchrun``.

``torchrun --nproc-per-node N -m isthmus sae train ...`` runs N copies of ``train_sae``. The process
group, the DDP wrapper (gradients averaged in backward) and the collectives are the Trainer's
(:mod:`isthmus.train.distributed`); this module holds the SAE-specific parts:

* **Same batches as one process.** ``SAETrainConfig.batch_size`` is the *global* batch. Every rank
  draws the same global batch (same sampler generator, same store shuffle) and keeps its slice
  ``[r·B/N, (r+1)·B/N)``: the N slices are the batch one process would see, so the averaged
  gradient is the 1-process gradient up to float summation order. The encoder's 2·d·m FLOP per row
  is split N ways; reading is not (each rank streams the whole store, d·4 bytes per row).
* **Dead-latent counters** (``steps_since_fired``) are merged with an all-reduce MIN after each
  forward: a latent that fired on any rank's slice fired in the global batch, exactly as one process
  counts it. AuxK and resampling then see the 1-process dead set.
* **Resampling** gathers the global batch, resamples identically on every rank (same seed, same RNG
  stream) and broadcasts rank 0's result, so parameters and Adam moments can never drift apart.
* **Logged rows** are averaged over ranks (loss, terms, L0; FVU as the mean of the ranks' FVUs).

Exact up to rounding for the ``mse`` reconstruction loss while no latent is dead. Approximations,
as in sparsify: AuxK and ``recon_loss="fvu"`` normalise by each slice's variance; BatchTopK and
Matryoshka pick the top k·B/N of each slice (not of the global batch) and keep rank 0's threshold
(DDP broadcasts buffers from rank 0). A batch whose rows do not split evenly over the ranks (the
last, short batch of a store epoch) is skipped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from isthmus.train.distributed import DistInfo, gather_objects

__all__ = ["share", "rows_of", "sync_dead_counters", "broadcast_resampled", "gather_batch", "mean_row"]

_GLOBAL = ("step", "lr", "tokens", "tokens_per_s")  # the same on every rank, not averaged


def rows_of(batch: Any) -> int:
    """Rows in a tensor, an (x, y) pair or a dict of per-row tensors."""
    if isinstance(batch, dict):
        batch = batch["activations"]
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    return int(batch.shape[0])


def share(batch: Any, info: DistInfo) -> Any:
    """This rank's equal slice of a global batch (tensor, pair or dict of tensors)."""
    n = rows_of(batch) // info.world
    lo, hi = info.rank * n, (info.rank + 1) * n
    if isinstance(batch, dict):
        return {k: v[lo:hi] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(t[lo:hi] for t in batch)
    return batch[lo:hi]


def sync_dead_counters(sae: Any) -> None:
    """``steps_since_fired`` := its minimum over ranks (fired anywhere = fired in the global batch)."""
    counter = getattr(sae.bottleneck, "steps_since_fired", None)
    if counter is not None:
        dist.all_reduce(counter, op=dist.ReduceOp.MIN)


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """The global batch from every rank's equal slice, in rank order (= the 1-process batch)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def broadcast_resampled(sae: Any, optimizer: torch.optim.Optimizer) -> None:
    """Rank 0's resampled rows (encoder, decoder, bias, counters, Adam moments) on every rank."""
    tensors = [sae.W_dec.data, sae.W_enc.data, sae.b_enc.data, sae.bottleneck.steps_since_fired]
    for p in (sae.W_dec, sae.W_enc, sae.b_enc):
        state = optimizer.state.get(p, {})
        tensors += [state[k] for k in ("exp_avg", "exp_avg_sq") if k in state]
    for t in tensors:
        dist.broadcast(t, src=0)


def mean_row(row: dict[str, float]) -> dict[str, float]:
    """A logged row averaged over ranks (a collective: every rank calls it at the same step)."""
    rows = gather_objects(row)
    out = dict(row)
    for k, v in row.items():
        if k not in _GLOBAL and isinstance(v, float):
            vals = [r[k] for r in rows if k in r]
            out[k] = sum(vals) / len(vals)
    return out
