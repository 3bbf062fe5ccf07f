"""Identity bottleneck: the plain deterministic autoencoder code."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput


@dataclass
class IdentityConfig(BottleneckConfig):
    pass


@BOTTLENECKS.register("identity", IdentityConfig)
class IdentityBottleneck(Bottleneck):
    """Passes the encoder output through unchanged (``latent = h``)."""

    def __init__(self, config: IdentityConfig | None = None) -> None:
        super().__init__(config or IdentityConfig())

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        return BottleneckOutput(latent=h)
