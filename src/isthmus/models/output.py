"""Output dataclasses shared by every model (never positional tuples)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """What a model's forward/compute_loss returns.

    ``losses`` holds the named, weighted terms; ``loss`` is their sum (the optimised quantity).
    """

    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    recon: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)
