"""Vision-transformer parts: patchify/unpatchify, patch embedding, pre-norm blocks with a pluggable
attention, and MAE's random masking.

* :func:`patchify` / :func:`unpatchify` — ``(B, C, H, W) ↔ (B, N, p·p·C)``, exact inverses.
* :func:`random_masking` — He et al. 2021 (arXiv 2111.06377): per sample, shuffle the patches by
  uniform noise and keep the first ``(1 − ratio)·N``; returns the kept indices, the binary mask
  (1 = masked) and the permutation that restores the original order.
* :class:`Block` — pre-norm transformer block; ``attention`` is any module mapping ``(B, T, D) →
  (B, T, D)`` (multi-head self-attention by default), so other block types (CRATE's subspace
  attention, axial attention) drop in.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = [
    "patchify",
    "unpatchify",
    "PatchEmbed",
    "SelfAttention",
    "CrossAttention",
    "Block",
    "CrossBlock",
    "random_masking",
    "block_masking",
    "sincos_positions",
]


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W) → (B, N, patch·patch·C)`` in raster order of patches."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    b, n, d = patches.shape
    gh, gw = height // patch, width // patch
    if n != gh * gw or d != patch * patch * channels:
        raise ValueError(
            f"patches {tuple(patches.shape)} do not tile a {channels}x{height}x{width} image with patch {patch}"
        )
    x = patches.reshape(b, gh, gw, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, height, width)


def sincos_positions(n: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sine-cosine position table ``(n, dim)`` (dim even)."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(n, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table


class PatchEmbed(nn.Module):
    """Linear embedding of flattened patches ``(B, N, p·p·C) → (B, N, D)``."""

    def __init__(self, patch_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(patch_dim, dim)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.proj(patches)


class SelfAttention(nn.Module):
    """Multi-head self-attention ``(B, T, D) → (B, T, D)`` (optionally causal)."""

    def __init__(self, dim: int, heads: int = 4, causal: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, dh)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``(B, Tq, D)`` over keys/values ``(B, Tk, D)``."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, tq, d = queries.shape
        h = self.heads
        q = self.q(queries).reshape(b, tq, h, d // h).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


class CrossBlock(nn.Module):
    """Pre-norm block updating only the queries: ``q + attn(norm(q), norm([context; q]))``, then an MLP.

    The context (e.g. visible-patch latents) is read, never written: the context autoencoder's
    regressor, whose keys/values are the visible latents and the queries themselves.
    """

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(torch.cat([context, queries], 1))
        queries = queries + self.attn(self.norm_q(queries), kv)
        return queries + self.mlp(self.norm2(queries))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(
        self, dim: int, heads: int = 4, mlp_ratio: float = 4.0, attention: Callable[[int, int], nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = attention(dim, heads) if attention is not None else SelfAttention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def random_masking(
    x: torch.Tensor, ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``1 − ratio`` share of the tokens of each sample.

    Returns ``(kept (B, K, D), mask (B, N) with 1 = masked, keep_idx (B, K), restore (B, N))`` where
    ``torch.gather(shuffled, 1, restore)`` puts tokens back in their original order.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    b, n, d = x.shape
    keep = max(1, int(round(n * (1 - ratio))))
    noise = torch.rand(b, n, generator=generator, device=x.device)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    keep_idx = shuffle[:, :keep]
    kept = torch.gather(x, 1, keep_idx[..., None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, restore)
    return kept, mask, keep_idx, restore


def block_masking(
    grid: int, ratio: float, batch: int, generator: torch.Generator | None = None, max_block: int | None = None
) -> torch.Tensor:
    """BEiT-style block masks ``(B, grid·grid)`` (1 = masked) with exactly ``round(ratio·N)`` masked patches.

    Rectangles of random size and aspect are added until the target count is reached (the last one
    trimmed patch by patch), so masked regions are contiguous blocks rather than scattered patches.
    """
    n = grid * grid
    target = int(round(ratio * n))
    if not 0 <= target < n:
        raise ValueError(f"ratio {ratio} masks {target} of {n} patches; need 0 <= masked < {n}")
    max_block = max_block or max(1, grid // 2)
    out = torch.zeros(batch, n)
    for b in range(batch):
        m = torch.zeros(grid, grid)
        while int(m.sum()) < target:
            h = int(torch.randint(1, max_block + 1, (1,), generator=generator))
            w = int(torch.randint(1, max_block + 1, (1,), generator=generator))
            r = int(torch.randint(0, grid - h + 1, (1,), generator=generator))
            c = int(torch.randint(0, grid - w + 1, (1,), generator=generator))
            block = torch.zeros(grid, grid)
            block[r : r + h, c : c + w] = 1
            new = (block - m).clamp_min(0).flatten().nonzero().ravel()
            room = target - int(m.sum())
            flat = m.flatten()
            flat[new[:room]] = 1
            m = flat.reshape(grid, grid)
        out[b] = m.flatten()
    return out
