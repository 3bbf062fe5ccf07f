"""Perceiver resampler (Flamingo, arXiv 2204.14198; the IP-Adapter-Plus form DiCoDe uses): a fixed number
of learned query tokens read any number of input tokens by cross-attention.

Each layer: queries attend over ``concat(inputs, queries)`` (LayerNorm on both, as in the code), then a
4× feed-forward, both residual; a final LayerNorm (DiCoDe's ``use_norm_out``). The output shape
``(B, n_queries, dim)`` does not depend on the number of input tokens. Attention is blind to the order of
the inputs: a caller whose tokens have positions (image patches) must add position embeddings first, as
CLIP's ViT does before DiCoDe's resampler.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PerceiverResampler"]


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_x, self.norm_q = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        qn = self.norm_q(q)
        kv = torch.cat([self.norm_x(x), qn], 1)
        q = q + self.attn(qn, kv, kv, need_weights=False)[0]
        return q + self.ff(q)


class PerceiverResampler(nn.Module):
    """``(B, N, in_dim) -> (B, n_queries, dim)`` for any ``N``."""

    def __init__(self, in_dim: int, dim: int = 64, n_queries: int = 4, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, n_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList([_Layer(dim, heads) for _ in range(depth)])
        self.proj_out = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"PerceiverResampler expects (B, N, in_dim) tokens, got {tuple(x.shape)}")
        x = self.proj_in(x)
        q = self.queries.expand(len(x), -1, -1)
        for layer in self.layers:
            q = layer(x, q)
        return self.norm_out(self.proj_out(q))
