"""Prototype layer: learnable prototypes in latent space, class logits from distances to them.

Li, Liu, Chen & Rudin, "Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network
that Explains Its Predictions" (AAAI 2018, arXiv 1710.04806). With encodings f(x_i) and prototypes
p_j, the layer outputs squared distances d_ij = ‖f(x_i) − p_j‖²; logits = linear(−d). Two
regularisers keep prototypes interpretable (decodable to realistic inputs):

* R1 = mean_j min_i d_ij — every prototype is near some encoded input of the batch,
* R2 = mean_i min_j d_ij — every encoded input is near some prototype.

The latent passed on to the decoder is the encoding itself (the layer is a deterministic code plus
a head); ``codes`` holds the distances ``(B, m)``, and :meth:`PrototypeBottleneck.logits` maps them
to class scores. Use :class:`isthmus.models.PrototypeClassifier` for the paper's full objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.config import ConfigError

__all__ = ["PrototypeConfig", "PrototypeBottleneck", "squared_distances"]


@dataclass
class PrototypeConfig(BottleneckConfig):
    """``n_prototypes`` m (15 in the paper's MNIST model), ``n_classes`` for the logit layer,
    ``r1_weight``/``r2_weight`` λ1, λ2 (1 in the paper; 0 gives the ablation without regularisers).
    """

    n_prototypes: int = 15
    n_classes: int = 10
    r1_weight: float = 1.0
    r2_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.n_prototypes < 1:
            raise ConfigError(f"{name}.n_prototypes must be >= 1, got {self.n_prototypes}")
        if self.n_classes < 2:
            raise ConfigError(f"{name}.n_classes must be >= 2, got {self.n_classes}")
        if self.r1_weight < 0 or self.r2_weight < 0:
            raise ConfigError(f"{name}.r1_weight and r2_weight must be >= 0, got {self.r1_weight}, {self.r2_weight}")


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² for every pair, ``(len(a), len(b))``; exact differences (no cdist shortcut),
    so a distance near zero keeps an accurate gradient."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)


@BOTTLENECKS.register("prototype", PrototypeConfig)
class PrototypeBottleneck(Bottleneck):
    """Encodings ``(B, D)`` pass through; prototypes ``(m, D)``; losses ``r1``, ``r2`` (weighted)."""

    config: PrototypeConfig

    def __init__(self, config: PrototypeConfig | None = None) -> None:
        super().__init__(config or PrototypeConfig())
        cfg = self.config
        # The paper initialises prototypes uniformly in [0, 1); encodings start near that scale too.
        self.prototypes = nn.Parameter(torch.rand(cfg.n_prototypes, cfg.latent_dim))
        self.classifier = nn.Linear(cfg.n_prototypes, cfg.n_classes)

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        d = squared_distances(h, self.prototypes)  # (B, m)
        r1 = d.min(0).values.mean()  # each prototype to its nearest encoding
        r2 = d.min(1).values.mean()  # each encoding to its nearest prototype
        cfg = self.config
        losses = {}
        if cfg.r1_weight > 0:
            losses["r1"] = cfg.r1_weight * r1
        if cfg.r2_weight > 0:
            losses["r2"] = cfg.r2_weight * r2
        return BottleneckOutput(
            latent=h,
            codes=d,
            losses=losses,
            stats={
                "r1": r1.detach(),
                "r2": r2.detach(),
                "prototypes_used": d.argmin(1).unique().numel() / cfg.n_prototypes,
            },
        )

    def logits(self, distances: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes)`` from squared distances ``(B, m)``: nearer = larger input."""
        return self.classifier(-distances)
