"""A graph-convolution layer (Kipf & Welling 2017, arXiv 1609.02907): ``act(Â · X · W)``.

``Â`` is a normalised adjacency given per call (dense or sparse torch tensor), so one layer serves
any graph; used by the SDCN baseline of the SCGC recipe and any GCN autoencoder.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GCNLayer"]


class GCNLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, activation: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        nn.init.xavier_uniform_(self.weight)
        self.activation = activation

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        if adjacency.shape != (x.shape[0], x.shape[0]):
            raise ValueError(f"adjacency must be ({x.shape[0]}, {x.shape[0]}), got {tuple(adjacency.shape)}")
        support = x @ self.weight  # (N, out)
        out = torch.sparse.mm(adjacency, support) if adjacency.is_sparse else adjacency @ support
        return torch.relu(out) if self.activation else out
