"""A classifier on top of any encoder-like module, trained with the same Trainer.

Used by recipes that need a supervised network (the gradient-noise MLP, linear probes, purifier
targets) without writing a second training loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.output import ModelOutput


class Classifier(nn.Module):
    """``net(x)`` gives logits ``(B, n_classes)``; the loss is cross-entropy on ``(x, y)`` batches."""

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
        return ModelOutput(loss=ce, losses={"ce": ce}, logits=logits, stats={"accuracy": acc})

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            return torch.cat([self.net(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
        finally:
            self.train(was)
