"""Coding rate of token sets (Ma et al. 2007; CRATE's ``vis_utils/coding_rate.py``): how many nats it takes
to code the tokens up to distortion ε — large when the tokens span many directions, small when they are
compressed onto few. ``R(Z) = ½ log det(I + d/(m ε) · Z Zᵀ)`` for ``m`` unit-normalised tokens of dimension
``d`` (per head when heads are given, summed over heads), averaged over the batch.
"""

from __future__ import annotations

import torch

__all__ = ["coding_rate"]


def coding_rate(tokens: torch.Tensor, eps: float = 0.5) -> float:
    """Mean coding rate of ``(B, m, d)`` or ``(B, H, m, d)`` token sets (summed over heads)."""
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    z = tokens[:, None] if tokens.dim() == 3 else tokens
    if z.dim() != 4:
        raise ValueError(f"tokens must be (B, m, d) or (B, H, m, d), got {tuple(tokens.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError("tokens contain NaN or inf")
    z = z.double()
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    m, d = z.shape[-2], z.shape[-1]
    gram = z @ z.transpose(-1, -2)  # (B, H, m, m)
    eye = torch.eye(m, dtype=z.dtype)
    rate = torch.logdet(eye + (d / (m * eps)) * gram).sum(-1) / 2
    return float(rate.mean())
