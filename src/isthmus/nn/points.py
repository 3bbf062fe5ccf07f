"""Point-cloud parts (Point-MAE, Pang et al. 2022, arXiv 2203.06604): farthest-point sampling, kNN
patches around the sampled centres, a mini-PointNet patch embedding, and the Chamfer distance.

Pure torch (no CUDA kernels): fine for the few hundred points per cloud a CPU recipe uses.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["farthest_point_sample", "knn_group", "chamfer_distance", "MiniPointNet"]


def farthest_point_sample(points: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """Indices ``(B, n)`` of ``n`` points chosen greedily farthest from those already chosen.

    Deterministic given ``start`` (the first index), so a cloud always yields the same centres.
    """
    b, m, _ = points.shape
    if not 1 <= n <= m:
        raise ValueError(f"cannot sample {n} of {m} points")
    idx = torch.zeros(b, n, dtype=torch.long, device=points.device)
    dist = torch.full((b, m), float("inf"), device=points.device)
    cur = torch.full((b,), start, dtype=torch.long, device=points.device)
    ar = torch.arange(b, device=points.device)
    for i in range(n):
        idx[:, i] = cur
        d = (points - points[ar, cur][:, None]).pow(2).sum(-1)
        dist = torch.minimum(dist, d)
        cur = dist.argmax(1)
    return idx


def knn_group(points: torch.Tensor, centers: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` nearest points of each centre, relative to it: ``(B, G, k, 3)``."""
    if k > points.shape[1]:
        raise ValueError(f"k={k} exceeds the {points.shape[1]} points of a cloud")
    d = torch.cdist(centers, points)  # (B, G, M)
    nn_idx = d.topk(k, dim=-1, largest=False).indices  # (B, G, k)
    b = torch.arange(points.shape[0], device=points.device)[:, None, None]
    return points[b, nn_idx] - centers[:, :, None]


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer-L2 per cloud ``(B,)``: mean squared distance to the nearest point, both ways."""
    d = torch.cdist(a, b).pow(2)  # (B, Na, Nb)
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


class MiniPointNet(nn.Module):
    """Patch embedding ``(B, G, k, 3) → (B, G, dim)``: shared MLP, max-pool, concatenate the global
    feature to every point, a second shared MLP, max-pool (Point-MAE's encoder)."""

    def __init__(self, dim: int = 64, hidden: int = 64) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.second = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, dim))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        f = self.first(patches)  # (B, G, k, h)
        g = f.max(2, keepdim=True).values.expand_as(f)
        return self.second(torch.cat([f, g], -1)).max(2).values
