"""Axial attention (Ho et al. 2019, arXiv 1912.12180): attention along one axis of a ``(B, H, W, D)`` grid.

Attending along rows and columns separately costs ``O(HW·(H + W))`` instead of ``O((HW)²)`` for full
attention over the flattened image. ``causal=True`` masks later positions along the chosen axis,
which is what the axial autoregressive prior needs.
"""

from __future__ import annotations

import torch
from torch import nn

from isthmus.nn.vit import SelfAttention

__all__ = ["AxialAttention", "AxialBlock"]


class AxialAttention(nn.Module):
    """Self-attention along ``axis`` (``"row"``: within each row, over W; ``"column"``: within each column, over H)."""

    def __init__(self, dim: int, heads: int = 4, axis: str = "row", causal: bool = False) -> None:
        super().__init__()
        if axis not in ("row", "column"):
            raise ValueError(f"axis must be 'row' or 'column', got {axis!r}")
        self.axis = axis
        self.attn = SelfAttention(dim, heads, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, d = x.shape
        if self.axis == "row":
            return self.attn(x.reshape(b * h, w, d)).reshape(b, h, w, d)
        y = self.attn(x.transpose(1, 2).reshape(b * w, h, d))
        return y.reshape(b, w, h, d).transpose(1, 2)


class AxialBlock(nn.Module):
    """Pre-norm residual block: axial attention then a position-wise MLP."""

    def __init__(self, dim: int, heads: int = 4, axis: str = "row", causal: bool = False) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = AxialAttention(dim, heads, axis, causal)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
