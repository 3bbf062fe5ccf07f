"""CRATE blocks (Yu et al. 2023, "White-box transformers via sparse rate reduction"; Pai et al. 2024,
CRATE-MAE, arXiv 2404.02446), as in the authors' code (``Ma-Lab-Berkeley/CRATE``, ``model/crate_ae/``).

* :class:`MSSA` — multi-head *subspace* self-attention: **one** bias-free projection ``U`` gives queries,
  keys and values alike (``w = U x``, ``softmax(w wᵀ / √d_h) w`` per head), then an output projection.
  It is a gradient step on the coding rate of the tokens against the subspaces ``U_k``.
* :class:`ISTA` — one step of non-negative ISTA for ``min_a ½‖x − D a‖² + λ‖a‖₁`` started at ``a = x``:
  ``ReLU(x + η(Dᵀx − DᵀD x) − ηλ)`` (η 0.1, λ 0.5 in the CRATE-MAE encoder), ``D`` a learned square
  dictionary (Kaiming-uniform init).
* :class:`CRATEEncoderBlock` — ``z ← z + MSSA(LN(z))``, then ``z ← ISTA(LN(z))`` (no outer residual).
* :class:`CRATEDecoderBlock` — ``y ← D′·LN(z)`` (a linear dictionary), then ``z ← y − MSSA(LN(y))``.

Per block: MSSA ``2d² + d`` and ISTA/dictionary ``d²`` parameters plus two LayerNorms (``4d``), against ``12d²``
for a ViT block with an MLP ratio of 4 — the source of CRATE's parameter saving.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MSSA", "ISTA", "CRATEEncoderBlock", "CRATEDecoderBlock", "crate_block_params"]


class MSSA(nn.Module):
    """Multi-head subspace self-attention with one shared q = k = v projection ``(B, T, D) → (B, T, D)``."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim, bias=False)  # U = [U_1 ... U_K]: the subspace bases
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        w = self.qkv(x).reshape(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, dh)
        attn = torch.softmax(w @ w.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        return self.out((attn @ w).transpose(1, 2).reshape(b, t, d))


class ISTA(nn.Module):
    """One non-negative ISTA step from ``a = x`` with a learned square dictionary ``D`` (``weight``)."""

    def __init__(self, dim: int, step: float = 0.1, lambd: float = 0.5) -> None:
        super().__init__()
        if step <= 0 or lambd < 0:
            raise ValueError(f"ISTA needs step > 0 and lambd >= 0, got step={step}, lambd={lambd}")
        self.weight = nn.Parameter(torch.empty(dim, dim))
        nn.init.kaiming_uniform_(self.weight)
        self.step, self.lambd = step, lambd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.weight
        grad = x @ d.T @ d - x @ d  # row form of DᵀD x − Dᵀx
        return torch.relu(x - self.step * grad - self.step * self.lambd)


class CRATEEncoderBlock(nn.Module):
    """``z + MSSA(LN(z))`` then ``ISTA(LN(·))`` (pre-norm, as in ``crate_encoder.py``)."""

    def __init__(self, dim: int, heads: int = 4, step: float = 0.1, lambd: float = 0.5) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.ista = MSSA(dim, heads), ISTA(dim, step, lambd)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.attn(self.norm1(z))
        return self.ista(self.norm2(z))


class CRATEDecoderBlock(nn.Module):
    """``y = D′·LN(z)`` then ``y − MSSA(LN(y))`` (``crate_decoder.py``: the encoder block run backwards)."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dictionary = nn.Parameter(torch.empty(dim, dim))
        nn.init.kaiming_uniform_(self.dictionary)
        self.attn = MSSA(dim, heads)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.norm1(z) @ self.dictionary.T
        return y - self.attn(self.norm2(y))


def crate_block_params(dim: int) -> int:
    """Parameters of one CRATE encoder or decoder block: ``3d² + d`` (MSSA + dictionary) ``+ 4d`` (two LNs)."""
    return 3 * dim * dim + dim + 4 * dim
