"""Re-estimate ARD priors from a held-out subset at every epoch end (ARD-VAE, arXiv 2501.10901)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from isthmus.train.callbacks.base import Callback
from isthmus.train.data import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from isthmus.train.trainer import Trainer

__all__ = ["ARDUpdate", "update_ard_priors"]


def _ard_modules(model: torch.nn.Module) -> list[Any]:
    from isthmus.bottlenecks.ard import ARDBottleneck

    return [m for m in model.modules() if isinstance(m, ARDBottleneck)]


@torch.no_grad()
def update_ard_priors(
    model: torch.nn.Module, x: torch.Tensor, generator: torch.Generator | None = None, batch_size: int = 4096
) -> list[torch.Tensor]:
    """Encode held-out ``x`` with ``model.encoder`` and re-estimate every ARD bottleneck's τ².

    The encoder runs in eval mode (no dropout noise in the statistics); returns the new τ² per ARD module.
    """
    targets = _ard_modules(model)
    if not targets:
        raise ValueError(f"{type(model).__name__} has no ARD bottleneck to update")
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise TypeError(f"{type(model).__name__} has no .encoder; call ARDBottleneck.update_prior(h) yourself")
    was = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        h = torch.cat([encoder(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)
    return [bn.update_prior(h, generator=generator) for bn in targets]


class ARDUpdate(Callback):
    """Trainer callback: at fit start and every epoch end, draw ``subset_size`` rows of ``held_out``
    (a subset resampled each epoch, seeded by ``(seed, epoch)`` so a resumed run draws the same one)
    and re-estimate the ARD prior variances from them.

    ``held_out`` must not be in the training set: the paper estimates τ² on data the SGD step did
    not see, which keeps the prior from chasing the training posteriors.
    """

    def __init__(self, held_out: torch.Tensor, subset_size: int | None = None, seed: int = 0) -> None:
        if isinstance(held_out, (tuple, list)):
            held_out = held_out[0]
        if len(held_out) == 0:
            raise ValueError("ARDUpdate needs a non-empty held-out tensor")
        self.held_out = held_out
        self.subset_size = min(subset_size or len(held_out), len(held_out))
        self.seed = seed

    def _update(self, trainer: "Trainer", epoch: int) -> None:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, 7, epoch))
        idx = torch.randperm(len(self.held_out), generator=gen)[: self.subset_size]
        update_ard_priors(trainer.model, self.held_out[idx], generator=gen)

    def on_fit_start(self, trainer: "Trainer") -> None:
        if trainer.global_step == 0:  # a resumed run already carries its τ² in the weights
            self._update(trainer, -1)

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, Any]) -> None:
        self._update(trainer, trainer.epoch)
        bns = _ard_modules(trainer.model)
        logs["ard_prior_var_max"] = float(bns[0].prior_var.max())
