"""A learned sparse graph over a fixed set of nodes (channels), and latent mixing along it.

Graph learning as in StackVAE-G (Li et al., arXiv 2105.08397; after MTGNN, Wu et al. 2020): each
node has a learnable embedding ``E`` (C, d); ``M = tanh(α·Lin(E))``, dense weights
``W = ReLU(α·tanh(M Mᵀ))`` — α outside the outer tanh, as in the authors' code
(``liwk16/StackVAE``, ``GraphVAE_Module.get_adjmat``; the paper notes put it inside, which at
|M Mᵀ| ≈ 5 saturates the tanh and leaves the embeddings without gradient); each row keeps its ``k`` largest off-diagonal weights, the identity is
added (every node keeps itself) and rows are normalised to sum to 1. The diagonal is masked before
the top-k so the k picks are true neighbours (the paper's M Mᵀ diagonal is its largest entry).
The top-k *choice* is not differentiable, the kept weights are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from isthmus.config import Config, ConfigError

__all__ = ["GraphLearner", "GraphLearnerConfig", "mix_nodes"]


@dataclass
class GraphLearnerConfig(Config):
    n_nodes: int = 8
    embed_dim: int = 30
    k: int = 10  # neighbours kept per node (clipped to n_nodes - 1)
    alpha: float = 3.0  # saturation of the tanh; larger = sharper edges
    init_scale: float = 1.0  # std of the initial embeddings (1 = the paper's randn)

    def validate(self) -> None:
        if self.n_nodes < 1 or self.embed_dim < 1 or self.k < 0:
            raise ConfigError(
                f"GraphLearnerConfig needs n_nodes >= 1, embed_dim >= 1, k >= 0, got "
                f"{self.n_nodes}, {self.embed_dim}, {self.k}"
            )
        if self.alpha <= 0:
            raise ConfigError(f"GraphLearnerConfig.alpha must be > 0, got {self.alpha}")


class GraphLearner(nn.Module):
    """``forward()`` → row-stochastic sparse adjacency ``(C, C)``; ``dense()`` → weights before top-k."""

    def __init__(self, config: GraphLearnerConfig | None = None) -> None:
        super().__init__()
        self.config = config or GraphLearnerConfig()
        c = self.config
        self.embedding = nn.Parameter(torch.randn(c.n_nodes, c.embed_dim) * c.init_scale)
        self.proj = nn.Linear(c.embed_dim, c.embed_dim)

    def dense(self) -> torch.Tensor:
        """``ReLU(α tanh(M Mᵀ))`` with a zero diagonal, ``(C, C)``, before sparsification."""
        a = self.config.alpha
        m = torch.tanh(a * self.proj(self.embedding))  # (C, d)
        w = torch.relu(a * torch.tanh(m @ m.T))  # (C, C), symmetric
        return w * (1.0 - torch.eye(len(w), dtype=w.dtype, device=w.device))

    def forward(self) -> torch.Tensor:
        w = self.dense()
        n = w.shape[0]
        k = min(self.config.k, n - 1)
        if k > 0:
            idx = w.topk(k, dim=1).indices  # (C, k)
            keep = torch.zeros_like(w).scatter_(1, idx, 1.0)
            w = w * keep
        else:
            w = torch.zeros_like(w)
        w = w + torch.eye(n, dtype=w.dtype, device=w.device)
        return w / w.sum(1, keepdim=True)


def mix_nodes(h: torch.Tensor, adjacency: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight · A h + (1 − weight) · h`` for node features ``h`` (B, C, F) and ``A`` (C, C)."""
    if weight == 0:
        return h
    return weight * torch.einsum("ij,bjf->bif", adjacency, h) + (1.0 - weight) * h
