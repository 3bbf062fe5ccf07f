"""Affine autoregressive normalizing flow over vectors, with a causal transformer (TARFlow / STARFlow,
Zhai et al. 2024, Gu et al. 2025, arXiv 2506.06276).

A vector ``x ∈ R^D`` is read as a sequence of ``D / token_dim`` tokens. Each flow block runs a causal
transformer over the tokens *shifted by one* and outputs, for token ``t``, a shift ``μ_t`` and a
log-scale ``α_t`` computed from tokens ``< t`` only; ``z_t = (x_t − μ_t) · exp(−α_t)``. The Jacobian is
triangular, so ``log p(x) = log N(z; 0, I) − Σ α`` exactly. Blocks alternate the token order.
Sampling inverts one token at a time. ``noise_std`` adds Gaussian noise to the training inputs (the
papers' noise augmentation; a denoising decoder then removes it downstream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.vit import Block, SelfAttention, sincos_positions

__all__ = ["FlowConfig", "AutoregressiveFlow"]


@dataclass
class FlowConfig(Config):
    dim: int = 16  # data dimension D
    token_dim: int = 1  # features per token
    width: int = 64
    heads: int = 4
    depth: int = 2  # transformer blocks per flow block
    blocks: int = 4  # flow blocks (orders alternate)
    noise_std: float = 0.0
    max_log_scale: float = 4.0  # soft clamp of α, for stability early in training

    def validate(self) -> None:
        if self.dim % self.token_dim:
            raise ConfigError(f"FlowConfig.dim {self.dim} must be divisible by token_dim {self.token_dim}")
        if self.width % self.heads or self.width % 2:
            raise ConfigError("FlowConfig.width must be even and divisible by heads")
        if self.noise_std < 0:
            raise ConfigError("FlowConfig.noise_std must be >= 0")


class _FlowBlock(nn.Module):
    pos: torch.Tensor  # a buffer

    def __init__(self, c: FlowConfig) -> None:
        super().__init__()
        n = c.dim // c.token_dim
        self.c = c
        self.inp = nn.Linear(c.token_dim, c.width)
        self.start = nn.Parameter(torch.zeros(1, 1, c.width))
        self.register_buffer("pos", sincos_positions(n, c.width)[None], persistent=False)
        causal = lambda d, h: SelfAttention(d, h, causal=True)  # noqa: E731
        self.blocks = nn.Sequential(*[Block(c.width, c.heads, attention=causal) for _ in range(c.depth)])
        self.out = nn.Linear(c.width, 2 * c.token_dim)
        nn.init.zeros_(self.out.weight)  # start as the identity map
        nn.init.zeros_(self.out.bias)

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, α)`` for every token from the tokens before it; ``x``: ``(B, T, token_dim)``."""
        h = self.inp(x)
        h = torch.cat([self.start.expand(x.shape[0], 1, -1), h[:, :-1]], 1) + self.pos  # shift by one
        mu, alpha = self.out(self.blocks(h)).chunk(2, -1)
        m = self.c.max_log_scale
        return mu, m * torch.tanh(alpha / m)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, alpha = self.params(x)
        return (x - mu) * torch.exp(-alpha), -alpha.sum((1, 2))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(z)
        for t in range(z.shape[1]):  # token t depends on x_<t only
            mu, alpha = self.params(x)
            x[:, t] = z[:, t] * torch.exp(alpha[:, t]) + mu[:, t]
        return x


class AutoregressiveFlow(Pretrained, nn.Module):
    config_class = FlowConfig

    def __init__(self, config: FlowConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or FlowConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        self.flow = nn.ModuleList([_FlowBlock(c) for _ in range(c.blocks)])

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"expected (B, {self.config.dim}) vectors, got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1, self.config.token_dim)

    def to_noise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z (B, D), log|det ∂z/∂x| (B,))``."""
        h, logdet = self._tokens(x), torch.zeros(x.shape[0], device=x.device)
        for i, blk in enumerate(self.flow):
            if i % 2:
                h = h.flip(1)
            h, ld = blk(h)
            logdet = logdet + ld
            if i % 2:
                h = h.flip(1)
        return h.reshape(x.shape[0], -1), logdet

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` in nats ``(B,)``."""
        z, logdet = self.to_noise(x)
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1) + logdet

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        c = self.config
        h = (torch.randn(n, c.dim, generator=generator) * temperature).reshape(n, -1, c.token_dim)
        for i in reversed(range(len(self.flow))):
            if i % 2:
                h = h.flip(1)
            h = cast(_FlowBlock, self.flow[i]).inverse(h)
            if i % 2:
                h = h.flip(1)
        return h.reshape(n, -1)

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if self.training and self.config.noise_std > 0:
            x = x + self.config.noise_std * torch.randn_like(x)
        nll = -self.log_prob(x).mean() / self.config.dim
        return ModelOutput(loss=nll, losses={"nll_per_dim": nll})
