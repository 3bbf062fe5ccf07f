"""A small diffusion transformer (DiT, Peebles & Xie 2023, arXiv 2212.09748) over a sequence of latent tokens.

Each block is a pre-norm transformer block whose norms are *modulated* by the conditioning vector
``c = time embedding + class embedding`` (adaLN-zero: the per-block shift/scale/gate projections start
at zero, so every block starts as the identity and the network starts at output 0). Class label
``n_classes`` is the learned null class that classifier-free guidance drops labels to.

``head_width > 0`` adds RAE-diffusion's wide, shallow "DDT head" (Zheng et al. 2025, arXiv 2510.11690):
``head_depth`` adaLN blocks of width ``head_width`` that read the trunk's output tokens concatenated with
the noisy input tokens, so a narrow trunk can still emit high-dimensional tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from isthmus.nn.vit import SelfAttention, sincos_positions

__all__ = ["DiT", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of times ``t`` ``(B,)`` in [0, 1] (scaled by ``scale``)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    arg = scale * t.float()[:, None] * freq[None]
    emb = torch.cat([arg.cos(), arg.sin()], 1)
    return nn.functional.pad(emb, (0, dim - emb.shape[1]))


class _AdaLNBlock(nn.Module):
    def __init__(self, width: int, heads: int, cond: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.attn = SelfAttention(width, heads)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        lin = nn.Linear(cond, 6 * width)
        nn.init.zeros_(lin.weight)  # adaLN-zero: gates start at 0, the block is the identity
        nn.init.zeros_(lin.bias)
        self.mod = nn.Sequential(nn.SiLU(), lin)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s1, b1, g1, s2, b2, g2 = self.mod(c)[:, None].chunk(6, -1)
        h = h + g1 * self.attn(self.norm1(h) * (1 + s1) + b1)
        return h + g2 * self.mlp(self.norm2(h) * (1 + s2) + b2)


class _Final(nn.Module):
    def __init__(self, width: int, cond: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        mod, self.out = nn.Linear(cond, 2 * width), nn.Linear(width, out)
        for lin in (mod, self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.mod = nn.Sequential(nn.SiLU(), mod)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s, b = self.mod(c)[:, None].chunk(2, -1)
        return self.out(self.norm(h) * (1 + s) + b)


class DiT(nn.Module):
    """``forward(x (B, T, token_dim), t (B,), y (B,) | None) -> (B, T, token_dim)``."""

    def __init__(
        self,
        token_dim: int,
        n_tokens: int,
        width: int = 64,
        depth: int = 4,
        heads: int = 4,
        n_classes: int = 0,
        head_width: int = 0,
        head_depth: int = 2,
    ) -> None:
        super().__init__()
        if width % heads or width % 2:
            raise ValueError(f"DiT width {width} must be even and divisible by heads {heads}")
        if head_width and head_width % heads:
            raise ValueError(f"DiT head_width {head_width} must be divisible by heads {heads}")
        self.width, self.n_classes = width, n_classes
        self.inp = nn.Linear(token_dim, width)
        self.register_buffer("pos", sincos_positions(n_tokens, width)[None], persistent=False)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.label = nn.Embedding(n_classes + 1, width) if n_classes else None
        self.blocks = nn.ModuleList([_AdaLNBlock(width, heads, width) for _ in range(depth)])
        self.head: nn.ModuleList | None = None
        if head_width:
            self.head_in = nn.Linear(width + token_dim, head_width)
            self.register_buffer("head_pos", sincos_positions(n_tokens, head_width)[None], persistent=False)
            self.head_cond = nn.Linear(width, head_width)
            self.head = nn.ModuleList([_AdaLNBlock(head_width, heads, head_width) for _ in range(head_depth)])
            self.final = _Final(head_width, head_width, token_dim)
        else:
            self.final = _Final(width, width, token_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.time(timestep_embedding(t, self.width))
        if self.label is not None:
            if y is None:
                y = torch.full((len(x),), self.n_classes, dtype=torch.long, device=x.device)
            c = c + self.label(y)
        h = self.inp(x) + self.pos
        for blk in self.blocks:
            h = blk(h, c)
        if self.head is None:
            return self.final(h, c)
        g, ch = self.head_in(torch.cat([h, x], -1)) + self.head_pos, self.head_cond(c)
        for blk in self.head:
            g = blk(g, ch)
        return self.final(g, ch)
