"""Affine autoregressive normalizing flow over vectors, with a causal transformer (TARFlow / STARFlow,
Zhai et al. 2024, Gu et al. 2025, arXiv 2506.06276).

A vector ``x ∈ R^D`` is read as a sequence of ``D / token_dim`` tokens. Each flow block runs a causal
transformer over the tokens *shifted by one* and outputs, for token ``t``, a shift ``μ_t`` and a
log-scale ``α_t`` computed from tokens ``< t`` only; ``z_t = (x_t − μ_t) · exp(−α_t)``. The Jacobian is
triangular, so ``log p(x) = log N(z; 0, I) − Σ α`` exactly. Blocks alternate the token order.
Sampling inverts one token at a time. ``noise_std`` adds Gaussian noise to the training inputs (the
papers' noise augmentation; a denoising decoder then removes it downstream, or :meth:`denoise` takes
TARFlow's one score-based step ``x + σ²∇log p(x)``).

STARFlow's deep–shallow layout: ``depths`` gives each block its own transformer depth in the data →
noise order (``(1, 1, 4)``: two shallow blocks next to the data, one deep block next to the prior).
With ``n_classes > 0`` only that last (deep) block is conditioned (the code's ``cond_top_only``): the
class embedding is added to its start-of-sequence token, and training drops the label to a learned
"null" class with probability ``label_drop`` so that :meth:`sample` can apply STARFlow's guidance
(``guidance > 0``): with ``s = min(σ_c/σ_u, 1)²``, ``σ = σ_c/√(1+w−ws)`` and
``μ = ((1+w)μ_c − wsμ_u)/(1+w−ws)``; ``w = 0`` is the plain conditional.
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

__all__ = ["FlowConfig", "AutoregressiveFlow", "guide"]


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
    depths: list[int] | None = None  # per-block transformer depth, data -> prior order; None: ``depth`` each
    n_classes: int = 0  # > 0: the last (deep) block is class-conditioned
    label_drop: float = 0.1  # share of training labels replaced by the null class (for guidance)

    def validate(self) -> None:
        if self.dim % self.token_dim:
            raise ConfigError(f"FlowConfig.dim {self.dim} must be divisible by token_dim {self.token_dim}")
        if self.width % self.heads or self.width % 2:
            raise ConfigError("FlowConfig.width must be even and divisible by heads")
        if self.noise_std < 0:
            raise ConfigError("FlowConfig.noise_std must be >= 0")
        if self.depths is not None and (len(self.depths) != self.blocks or min(self.depths) < 1):
            raise ConfigError(f"FlowConfig.depths {self.depths} must list {self.blocks} depths >= 1 (one per block)")
        if self.n_classes < 0 or not 0 <= self.label_drop < 1:
            raise ConfigError("FlowConfig needs n_classes >= 0 and 0 <= label_drop < 1")

    def block_depths(self) -> list[int]:
        return list(self.depths) if self.depths is not None else [self.depth] * self.blocks


class _FlowBlock(nn.Module):
    pos: torch.Tensor  # a buffer

    def __init__(self, c: FlowConfig, depth: int, n_classes: int = 0) -> None:
        super().__init__()
        n = c.dim // c.token_dim
        self.c = c
        self.inp = nn.Linear(c.token_dim, c.width)
        self.start = nn.Parameter(torch.zeros(1, 1, c.width))
        self.register_buffer("pos", sincos_positions(n, c.width)[None], persistent=False)
        causal = lambda d, h: SelfAttention(d, h, causal=True)  # noqa: E731
        self.blocks = nn.Sequential(*[Block(c.width, c.heads, attention=causal) for _ in range(depth)])
        # class n_classes is the null (unconditional) class
        self.label = nn.Embedding(n_classes + 1, c.width) if n_classes else None
        self.out = nn.Linear(c.width, 2 * c.token_dim)
        nn.init.zeros_(self.out.weight)  # start as the identity map
        nn.init.zeros_(self.out.bias)

    def params(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, α)`` for every token from the tokens before it; ``x``: ``(B, T, token_dim)``."""
        h = self.inp(x)
        start = self.start.expand(x.shape[0], 1, -1)
        if self.label is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.label.num_embeddings - 1, dtype=torch.long, device=x.device)
            start = start + self.label(y)[:, None]
        h = torch.cat([start, h[:, :-1]], 1) + self.pos  # shift by one
        mu, alpha = self.out(self.blocks(h)).chunk(2, -1)
        m = self.c.max_log_scale
        return mu, m * torch.tanh(alpha / m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, alpha = self.params(x, y)
        return (x - mu) * torch.exp(-alpha), -alpha.sum((1, 2))

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None, guidance: float = 0.0) -> torch.Tensor:
        x = torch.zeros_like(z)
        for t in range(z.shape[1]):  # token t depends on x_<t only
            mu, alpha = self.params(x, y)
            mu, sigma = mu[:, t], torch.exp(alpha[:, t])
            if guidance and self.label is not None and y is not None:
                mu_u, alpha_u = self.params(x, None)
                mu, sigma = guide(mu, sigma, mu_u[:, t], torch.exp(alpha_u[:, t]), guidance)
            x[:, t] = z[:, t] * sigma + mu
        return x


def guide(
    mu_c: torch.Tensor, sigma_c: torch.Tensor, mu_u: torch.Tensor, sigma_u: torch.Tensor, w: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """STARFlow's guided ``(μ, σ)`` from the conditional and unconditional ones (``apple/ml-starflow``)."""
    s = torch.clamp(sigma_c / sigma_u, max=1.0).pow(2)
    k = 1 + w - w * s
    return ((1 + w) * mu_c - w * s * mu_u) / k, sigma_c / k.sqrt()


class AutoregressiveFlow(Pretrained, nn.Module):
    config_class = FlowConfig

    def __init__(self, config: FlowConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or FlowConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        depths = c.block_depths()
        last = len(depths) - 1
        self.flow = nn.ModuleList([_FlowBlock(c, d, c.n_classes if i == last else 0) for i, d in enumerate(depths)])

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"expected (B, {self.config.dim}) vectors, got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1, self.config.token_dim)

    def to_noise(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z (B, D), log|det ∂z/∂x| (B,))``; ``y``: class labels (None: unconditional)."""
        h, logdet = self._tokens(x), torch.zeros(x.shape[0], device=x.device)
        for i, blk in enumerate(self.flow):
            if i % 2:
                h = h.flip(1)
            h, ld = blk(h, y)
            logdet = logdet + ld
            if i % 2:
                h = h.flip(1)
        return h.reshape(x.shape[0], -1), logdet

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(x | y)`` in nats ``(B,)`` (``y = None``: the unconditional / null class)."""
        self._check_labels(y, len(x))
        z, logdet = self.to_noise(x, y)
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1) + logdet

    def _check_labels(self, y: torch.Tensor | None, n: int) -> None:
        if y is None:
            return
        k = self.config.n_classes
        if not k:
            raise ValueError("labels given to an unconditional flow (FlowConfig.n_classes = 0)")
        if y.shape != (n,) or int(y.min()) < 0 or int(y.max()) > k:
            raise ValueError(f"labels must be ({n},) integers in [0, {k}] ({k} = the null class)")

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        labels: torch.Tensor | None = None,
        guidance: float = 0.0,
    ) -> torch.Tensor:
        """``n`` samples, one token at a time; ``labels`` ``(n,)`` for a class-conditional flow, with
        STARFlow's ``guidance`` weight (0: the plain conditional)."""
        c = self.config
        self._check_labels(labels, n)
        dtype = next(self.parameters()).dtype
        h = (torch.randn(n, c.dim, generator=generator, dtype=dtype) * temperature).reshape(n, -1, c.token_dim)
        for i in reversed(range(len(self.flow))):
            if i % 2:
                h = h.flip(1)
            h = cast(_FlowBlock, self.flow[i]).inverse(h, labels, guidance)
            if i % 2:
                h = h.flip(1)
        return h.reshape(n, -1)

    def denoise(self, x: torch.Tensor, labels: torch.Tensor | None = None, sigma: float | None = None) -> torch.Tensor:
        """TARFlow's one score-based denoising step ``x + σ²∇ₓlog p(x)`` (Tweedie), for a flow trained on
        inputs with noise of std ``σ`` (default ``noise_std``)."""
        sigma = self.config.noise_std if sigma is None else sigma
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(x, labels).sum(), x)
        return (x + sigma**2 * grad).detach()

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 and self.config.n_classes else None
        if self.training and self.config.noise_std > 0:
            x = x + self.config.noise_std * torch.randn_like(x)
        if y is not None and self.training and self.config.label_drop > 0:
            drop = torch.rand(len(y), device=y.device) < self.config.label_drop
            y = torch.where(drop, torch.full_like(y, self.config.n_classes), y)
        nll = -self.log_prob(x, y).mean() / self.config.dim
        return ModelOutput(loss=nll, losses={"nll_per_dim": nll})
