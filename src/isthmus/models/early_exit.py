"""Early-exit classification (BranchyNet, Teerapittayanon et al. 2016) on a LeNet-5 backbone.

:class:`LeNet5` is the classic 28×28 backbone (conv 6 → pool → conv 16 → pool → 120 → 84 → classes).
:class:`EarlyExitNet` adds a light branch after the first conv block (BranchyNet's exit 1). At inference
a sample leaves at the branch when the branch's prediction entropy is below ``threshold``, else it runs
the rest of the network; ``threshold = 0`` always runs the full net, ``inf`` always exits early.
:func:`calibrate_threshold` picks the largest threshold whose validation accuracy stays within a
tolerance of the full network's (BranchyNet's rule), so a deployment never tunes on test data.
Training (``compute_loss``) sums the cross-entropies of both exits, as BranchyNet does.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.output import ModelOutput

__all__ = ["LeNet5", "EarlyExitNet", "entropy", "calibrate_threshold"]


class LeNet5(nn.Module):
    def __init__(self, n_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))  # 6x14x14
        self.rest = nn.Sequential(
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),  # 16x5x5
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.block1(_images(x)))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).argmax(-1)

    def compute_loss(self, batch: Any) -> ModelOutput:
        x, y = batch
        ce = F.cross_entropy(self(x), y)
        return ModelOutput(loss=ce, losses={"cross_entropy": ce})


def _images(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2 and x.shape[1] == 784:
        return x.view(-1, 1, 28, 28)
    if x.dim() == 3:
        return x[:, None]
    return x


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Prediction entropy per row (nats)."""
    logp = F.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


class EarlyExitNet(nn.Module):
    """LeNet-5 with an exit after its first conv block: ``forward`` → ``(branch_logits, full_logits)``."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1, threshold: float = 0.0) -> None:
        super().__init__()
        self.backbone = LeNet5(n_classes, in_channels)
        self.branch = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 7 * 7, n_classes))  # exit 1
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone.block1(_images(x))
        return self.branch(h), self.backbone.rest(h)

    def branch_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(self.backbone.block1(_images(x)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """Exit at the branch where its entropy < threshold; the rest run the full network (only they)."""
        t = self.threshold if threshold is None else threshold
        h = self.backbone.block1(_images(x))
        b = self.branch(h)
        out = b.argmax(-1)
        hard = entropy(b) >= t
        if hard.any():
            out[hard] = self.backbone.rest(h[hard]).argmax(-1)
        return out

    def compute_loss(self, batch: Any) -> ModelOutput:
        x, y = batch
        b, f = self(x)
        terms = {"branch_ce": F.cross_entropy(b, y), "full_ce": F.cross_entropy(f, y)}
        return ModelOutput(loss=cast(torch.Tensor, sum(terms.values())), losses=terms, logits=f)


@torch.no_grad()
def calibrate_threshold(
    model: EarlyExitNet,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    tolerance: float = 0.005,
    candidates: np.ndarray | None = None,
) -> float:
    """The largest entropy threshold whose validation accuracy is within ``tolerance`` of the full net's."""
    model.eval()
    b, f = model(x_val)
    full_acc = (f.argmax(-1) == y_val).float().mean().item()
    ent = entropy(b)
    cands = np.sort(ent.numpy()) if candidates is None else np.sort(candidates)
    best = 0.0
    for t in cands:
        pred = torch.where(ent < float(t), b.argmax(-1), f.argmax(-1))
        if (pred == y_val).float().mean().item() >= full_acc - tolerance:
            best = float(t)
    return best
