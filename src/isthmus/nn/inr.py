"""Implicit-neural-representation blocks: coordinate encodings and the NeRV / NeRV++ video decoder blocks.

* :func:`nerv_positional_encoding` — NeRV's frame-index encoding (Chen et al. 2021):
  ``[sin(b⁰πt), cos(b⁰πt), …, sin(b^{l−1}πt), cos(b^{l−1}πt)]`` (``b = 1.25, l = 40`` in NeRV and NeRV++).
* :class:`NeRVBlock` — Conv3×3 (C_in → C_out·s²) → PixelShuffle(s) → activation (NeRV's upsampling block).
* :class:`NeRVPlusBlock` — NeRV++'s block as in the authors' code (``models/model_best.py``, errata seed 36):
  1×1 projection → gated-CNN residual (5×5 depthwise, expansion 8/3, GELU gate) → NeRV upsampling block →
  residual conv-FFN, plus a bilinear upsample of the projected input. ``skip`` / ``residual_blocks`` switch
  the skip and the separable residual blocks off for the paper's ablations.
* :class:`GatedMLP` — the NeRV++ stem (Linear → split → x·GELU(z) → Linear).
* :class:`FourierFeatures`, :class:`FiLMMLP`, :func:`grid_features`, :class:`CFCMLP` — coordinate-MLP parts
  for generated INRs (seed 15, DDMI): fixed Fourier features with per-layer FiLM modulation (the
  Functa/mNIF baseline) and multi-scale feature grids read by bilinear interpolation and fed coarse to fine.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "nerv_positional_encoding",
    "NeRVBlock",
    "NeRVPlusBlock",
    "GatedCNNBlock",
    "ResidualFFN",
    "GatedMLP",
    "FourierFeatures",
    "FiLMMLP",
    "grid_features",
    "CFCMLP",
    "coordinate_grid",
]


def nerv_positional_encoding(t: torch.Tensor, base: float = 1.25, levels: int = 40) -> torch.Tensor:
    """``(B,)`` frame positions in [0, 1) → ``(B, 2·levels)``, sin/cos interleaved per level (NeRV's order)."""
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1)
    arg = t * (base ** torch.arange(levels, dtype=torch.float32))[None] * math.pi
    return torch.stack([arg.sin(), arg.cos()], dim=2).reshape(len(t), 2 * levels)


def _act(name: str) -> nn.Module:
    acts = {"swish": nn.SiLU, "silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted(acts)}")
    return acts[name]()


class NeRVBlock(nn.Module):
    """NeRV's upsampling block: Conv3×3 to ``c_out·s²`` channels, PixelShuffle(s), activation."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: str = "swish") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, 3, padding=1)
        self.shuffle = nn.PixelShuffle(stride)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class GatedCNNBlock(nn.Module):
    """MambaOut-style gated CNN residual: ``x + fc2(GELU(g) ⊙ dwconv(c))`` (conv on all channels)."""

    def __init__(self, dim: int, expansion: float = 8 / 3, kernel_size: int = 5) -> None:
        super().__init__()
        self.hidden = int(expansion * dim)
        self.dim = dim
        self.fc1 = nn.Linear(dim, 2 * self.hidden)
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.fc2 = nn.Linear(self.hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.permute(0, 2, 3, 1)
        g, i, c = torch.split(self.fc1(h), [self.hidden, self.hidden - self.dim, self.dim], dim=-1)
        c = self.conv(c.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.fc2(F.gelu(g) * torch.cat((i, c), dim=-1)).permute(0, 3, 1, 2)


class ResidualFFN(nn.Module):
    """``x + 1×1(GELU(1×1(dw3×3(x))))``: the separable residual block after NeRV++'s upsampling."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class NeRVPlusBlock(nn.Module):
    """NeRV++'s block (authors' code): ``proj → GatedCNN → NeRVBlock → ResidualFFN (+ bilinear skip)``."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, act: str = "swish", skip: bool = True, residual_blocks: bool = True
    ) -> None:
        super().__init__()
        self.stride, self.skip = stride, skip
        self.proj = nn.Conv2d(c_in, c_out, 1)
        self.gcnn: nn.Module = GatedCNNBlock(c_out) if residual_blocks else nn.Identity()
        self.up = NeRVBlock(c_out, c_out, stride, act)
        self.rffn: nn.Module = ResidualFFN(c_out) if residual_blocks else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        out = self.rffn(self.up(self.gcnn(x)))
        if self.skip:
            out = out + F.interpolate(x, scale_factor=self.stride, mode="bilinear", align_corners=False)
        return out


class GatedMLP(nn.Module):
    """NeRV++'s stem: ``fc2(x · GELU_tanh(z))`` with ``[x, z] = fc1(input)``."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, 2 * hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, z = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(a * F.gelu(z, approximate="tanh"))


# ---- coordinate MLPs for generated INRs (DDMI, Functa-style modulation) -----------------------------


def coordinate_grid(h: int, w: int) -> torch.Tensor:
    """Pixel-centre coordinates of an ``h × w`` image in [−1, 1] (``align_corners=False`` convention),
    ``(h·w, 2)`` as ``(x, y)`` — the order ``grid_sample`` reads."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


class FourierFeatures(nn.Module):
    """Fixed axis-aligned Fourier features ``[sin(2^k π c), cos(2^k π c)]`` for ``k < n_freqs``, plus ``c``."""

    def __init__(self, n_freqs: int = 6, dim: int = 2) -> None:
        super().__init__()
        self.freqs: torch.Tensor
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs, dtype=torch.float32)) * math.pi)
        self.out_dim = dim * (2 * n_freqs + 1)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = c[..., None] * self.freqs
        return torch.cat([c, arg.sin().flatten(-2), arg.cos().flatten(-2)], -1)


class FiLMMLP(nn.Module):
    """Coordinate MLP whose hidden layers are shifted per example: ``h ← act(W h + b + shift_l)``.

    ``shifts``: ``(B, depth·width)`` (Functa's shift modulations); zero shifts give the base MLP.
    """

    def __init__(self, d_in: int, width: int, depth: int, d_out: int) -> None:
        super().__init__()
        self.width, self.depth = width, depth
        self.layers = nn.ModuleList([nn.Linear(d_in if i == 0 else width, width) for i in range(depth)])
        self.out = nn.Linear(width, d_out)

    @property
    def n_shifts(self) -> int:
        return self.width * self.depth

    def forward(self, feats: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """``feats`` ``(B, P, d_in)``, ``shifts`` ``(B, depth·width)`` → ``(B, P, d_out)``."""
        s = shifts.reshape(len(shifts), self.depth, 1, self.width)
        h = feats
        for i, layer in enumerate(self.layers):
            h = F.silu(layer(h) + s[:, i])
        return self.out(h)


def grid_features(grid: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear read of a feature grid ``(B, C, H, W)`` at coordinates ``(B, P, 2)`` in [−1, 1] (x, y;
    pixel-centre convention) → ``(B, P, C)``. At a node's centre it returns that node's features exactly."""
    out = F.grid_sample(grid, coords[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


class CFCMLP(nn.Module):
    """DDMI's coarse-to-fine-conditioned MLP: the coarsest grid feature enters block 1, each finer one is
    added after the next block (repo ``mlp.py``); ``scales`` grids of ``grid_dim`` channels each."""

    def __init__(self, grid_dim: int, width: int, scales: int, d_out: int, extra_blocks: int = 1) -> None:
        super().__init__()
        self.inp = nn.ModuleList([nn.Linear(grid_dim, width) for _ in range(scales)])
        self.blocks = nn.ModuleList([nn.Linear(width, width) for _ in range(scales + extra_blocks - 1)])
        self.out = nn.Linear(width, d_out)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """``feats``: per-scale ``(B, P, grid_dim)``, coarsest first → ``(B, P, d_out)``."""
        if len(feats) != len(self.inp):
            raise ValueError(f"expected {len(self.inp)} scales of features, got {len(feats)}")
        h = F.silu(self.inp[0](feats[0]))
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i + 1 < len(feats):
                h = h + self.inp[i + 1](feats[i + 1])
            h = F.silu(h)
        return self.out(h)
