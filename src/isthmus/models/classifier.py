"""A classifier on top of any encoder-like module, trained with the same Trainer.

Used by recipes that need a supervised network (the gradient-noise MLP, linear probes, purifier
targets) without writing a second training loop.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.output import ModelOutput
from isthmus.nn.low_rank import low_rank_losses


class Classifier(nn.Module):
    """``net(x)`` gives logits ``(B, n_classes)``; the loss is cross-entropy on ``(x, y)`` batches, plus the
    ``group_lasso`` term of any :class:`isthmus.nn.LowRankLinear` inside ``net`` (Maestro)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute_loss(self, batch: Any) -> ModelOutput:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("Classifier batches must be (x, y) pairs; build the dataset with labels")
        x, y = batch[0], batch[1]
        logits = self.net(x)
        ce = F.cross_entropy(logits, y.long())
        acc = (logits.argmax(1) == y).float().mean().detach()
        losses = {"ce": ce, **low_rank_losses(self.net)}
        total = cast(torch.Tensor, sum(losses.values()))  # never empty: "ce" is always a term
        return ModelOutput(loss=total, losses=losses, logits=logits, stats={"accuracy": acc})

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            return torch.cat([self.net(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
        finally:
            self.train(was)


class FrozenEncoderHead(nn.Module):
    """``head(encoder(x))`` with the encoder frozen (no gradient, always in eval mode).

    ``head`` may be any module or a bottleneck, whose ``latent`` is returned — e.g. a
    ``key_value`` bottleneck with ``latent_dim = n_classes`` is the DKVB classifier (arXiv 2207.11240).
    Use it as ``Classifier(FrozenEncoderHead(enc, head))`` or call it directly for logits.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.head = head

    def train(self, mode: bool = True) -> "FrozenEncoderHead":
        super().train(mode)
        self.encoder.eval()  # frozen: batch-norm/dropout statistics never change
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.encoder(x)
        out = self.head(h)
        return out.latent if hasattr(out, "latent") else out
