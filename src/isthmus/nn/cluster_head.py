"""The DEC cluster head (Xie et al. 2016, arXiv 1511.06335): Student-t soft assignment and its sharpened target.

``q_ij ∝ (1 + ‖z_i − μ_j‖² / v)^{−(v+1)/2}`` (``v = 1`` in DEC, IDEC, SDCN and SCGC), normalised over
clusters; the target ``p_ij ∝ q_ij² / f_j`` with ``f_j = Σ_i q_ij`` sharpens confident assignments and
divides by cluster size so that large clusters do not swallow the rest. Training minimises
``KL(P ‖ Q)`` with ``P`` held fixed between refreshes.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClusterHead", "target_distribution"]


class ClusterHead(nn.Module):
    """Learnable centres ``(K, D)``; ``forward(z) -> q (N, K)``, rows summing to 1."""

    def __init__(self, n_clusters: int, dim: int, v: float = 1.0) -> None:
        super().__init__()
        if n_clusters < 1 or dim < 1 or v <= 0:
            raise ValueError(f"ClusterHead needs n_clusters >= 1, dim >= 1, v > 0; got {n_clusters}, {dim}, {v}")
        self.v = float(v)
        self.centers = nn.Parameter(torch.zeros(n_clusters, dim))

    @torch.no_grad()
    def init_centers(self, centers: torch.Tensor) -> None:
        if centers.shape != self.centers.shape:
            raise ValueError(f"centres must be {tuple(self.centers.shape)}, got {tuple(centers.shape)}")
        self.centers.copy_(centers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(z, self.centers).pow(2)  # (N, K)
        q = (1.0 + d2 / self.v).pow(-(self.v + 1.0) / 2.0)
        return q / q.sum(1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's sharpened target ``p ∝ q² / f`` (rows sum to 1); detached, it is a fixed target."""
    w = q.pow(2) / q.sum(0)
    return (w / w.sum(1, keepdim=True)).detach()
