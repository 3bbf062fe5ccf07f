"""Gaussian-mixture (mixture density) head for autoregression over continuous tokens (DiCoDe, following
GIVT, arXiv 2312.02116): from a hidden state, ``k`` mixture weights, means and diagonal variances.

Variances are ``softplus(·) + min_var`` (the code's floor 1e-5). :meth:`nll` is DiCoDe's loss
``−log p(x) / d`` per token; :meth:`sample` picks a component by its weight, then draws from it with the
variances scaled by ``var_scale`` (DiCoDe samples with 0.01, close to the component mean).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MixtureDensityHead"]


class MixtureDensityHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, k: int = 4, min_var: float = 1e-5) -> None:
        super().__init__()
        if k < 1 or min_var <= 0:
            raise ValueError(f"need k >= 1 and min_var > 0, got k={k}, min_var={min_var}")
        self.k, self.d, self.min_var = k, out_dim, min_var
        self.proj = nn.Linear(in_dim, k * (1 + 2 * out_dim))

    def params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log weights (..., k), means (..., k, d), variances (..., k, d))``."""
        out = self.proj(h)
        logits, rest = out[..., : self.k], out[..., self.k :].unflatten(-1, (self.k, 2 * self.d))
        mu, raw = rest.chunk(2, -1)
        return F.log_softmax(logits, -1), mu, F.softplus(raw) + self.min_var

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | h)`` in nats, shape ``h.shape[:-1]``."""
        logw, mu, var = self.params(h)
        comp = -0.5 * (((x[..., None, :] - mu) ** 2) / var + var.log() + math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(logw + comp, -1)

    def nll(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """DiCoDe's loss: mean over tokens of ``−log p(x) / d``."""
        return -(self.log_prob(h, x) / self.d).mean()

    @torch.no_grad()
    def sample(self, h: torch.Tensor, var_scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        logw, mu, var = self.params(h)
        flat_w = logw.reshape(-1, self.k).exp()
        idx = torch.multinomial(flat_w, 1, generator=generator).reshape(logw.shape[:-1])
        pick = lambda t: torch.gather(t, -2, idx[..., None, None].expand(*idx.shape, 1, self.d))[..., 0, :]  # noqa: E731
        m, v = pick(mu), pick(var)
        return m + (v * var_scale).sqrt() * torch.randn(m.shape, generator=generator)
