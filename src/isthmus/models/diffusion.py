"""Flow-matching prior over latent vectors (rectified flow; Lipman et al. 2022, Liu et al. 2022), the
second stage of a two-stage generator (RAE-diffusion, DDMI, DiCoDe use diffusion/flow priors on latents).

Training: ``x_t = (1 − t)·x + t·ε`` with ``t ~ U(0, 1)`` (optionally shifted, below) and the network
regresses the velocity ``ε − x``. Sampling integrates ``dx/dt = v(x, t)`` from ``t = 1`` (noise) to
``t = 0`` with Euler steps, seeded by the caller's generator. ``time_shift = s`` maps ``t ↦ s·t / (1 +
(s − 1)·t)``, spending more of training and sampling at high noise — the dimension-dependent schedule
shift that RAE-diffusion (seed 27) finds necessary for wide latents (``s = 1``: no shift).
The velocity network is an MLP with a sinusoidal time embedding and residual blocks (``width``,
``depth``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput

__all__ = ["FlowMatchingConfig", "FlowMatchingPrior", "shift_time"]


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


@dataclass
class FlowMatchingConfig(Config):
    dim: int = 16
    width: int = 256
    depth: int = 3
    time_shift: float = 1.0
    steps: int = 50  # Euler steps when sampling

    def validate(self) -> None:
        if self.dim < 1 or self.width < 2 or self.depth < 1 or self.steps < 1:
            raise ConfigError("FlowMatchingConfig needs dim >= 1, width >= 2, depth >= 1, steps >= 1")
        if self.time_shift <= 0:
            raise ConfigError(f"FlowMatchingConfig.time_shift must be > 0, got {self.time_shift}")


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


class FlowMatchingPrior(Pretrained, nn.Module):
    config_class = FlowMatchingConfig

    def __init__(self, config: FlowMatchingConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or FlowMatchingConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        self.inp = nn.Linear(c.dim, c.width)
        self.time = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.blocks = nn.Sequential(*[_ResBlock(c.width) for _ in range(c.depth)])
        self.out = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.dim))

    def _time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = self.config.width // 2
        freq = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
        arg = 1000.0 * t[:, None] * freq[None]
        emb = torch.cat([arg.sin(), arg.cos()], 1)
        return self.time(nn.functional.pad(emb, (0, self.config.width - emb.shape[1])))

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"expected (B, {self.config.dim}) latents, got {tuple(x.shape)}")
        return self.out(self.blocks(self.inp(x) + self._time_embedding(t)))

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        t = shift_time(torch.rand(x.shape[0], device=x.device), self.config.time_shift)
        noise = torch.randn_like(x)
        xt = (1 - t[:, None]) * x + t[:, None] * noise
        loss = (self.velocity(xt, t) - (noise - x)).pow(2).mean()
        return ModelOutput(loss=loss, losses={"velocity_mse": loss})

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int | None = None) -> torch.Tensor:
        """``n`` latents by Euler integration from noise (``t = 1``) to data (``t = 0``)."""
        c = self.config
        k = steps or c.steps
        x = torch.randn(n, c.dim, generator=generator)
        ts = shift_time(torch.linspace(1.0, 0.0, k + 1), c.time_shift)
        for i in range(k):
            t = ts[i].expand(n)
            x = x + (ts[i + 1] - ts[i]) * self.velocity(x, t)
        return x
