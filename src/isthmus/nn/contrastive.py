"""Contrastive losses: NT-Xent (SimCLR) with an optional negative mask, and the neighbourhood-contrastive
loss of Graph-MLP / SCGC.

* :func:`nt_xent` — Chen et al. 2020 (arXiv 2002.05709): two views ``z1, z2`` of ``B`` items; each
  view's positive is the other view of the same item, the other ``2B − 2`` views are negatives.
  ``negative_mask[i, j] = False`` removes item ``j`` from item ``i``'s negatives (G-SimCLR's oracle:
  no same-class negatives).
* :func:`neighbour_contrastive` — Hu et al. 2021 (Graph-MLP), as SCGC's ``Ncontrast``:
  ``−mean_i log(Σ_j A_ij e^{τ S_ij} / Σ_j e^{τ S_ij})`` with ``S`` the cosine similarity, its
  diagonal zeroed (so ``e^0 = 1`` enters both sums, as in the authors' code), ``+1e-8`` in the log.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["nt_xent", "neighbour_contrastive"]


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.1, negative_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean NT-Xent loss over the ``2B`` views. ``z1, z2``: ``(B, D)``; ``negative_mask``: ``(B, B)`` bool."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    logits = z @ z.T / tau  # (2B, 2B)
    keep = ~torch.eye(2 * b, dtype=torch.bool, device=z.device)  # never contrast a view with itself
    if negative_mask is not None:
        if negative_mask.shape != (b, b):
            raise ValueError(f"negative_mask must be ({b}, {b}), got {tuple(negative_mask.shape)}")
        m = negative_mask.to(torch.bool).repeat(2, 2)
        pos = torch.arange(2 * b, device=z.device).roll(b)
        m[torch.arange(2 * b), pos] = True  # the positive always stays in the denominator
        keep &= m.to(z.device)
    logits = logits.masked_fill(~keep, float("-inf"))
    target = torch.arange(2 * b, device=z.device).roll(b)  # view i's positive is i ± B
    return F.cross_entropy(logits, target)


def neighbour_contrastive(z: torch.Tensor, adjacency_power: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Graph-MLP / SCGC neighbourhood-contrastive loss; ``adjacency_power`` is dense ``(N, N)``."""
    if z.ndim != 2 or adjacency_power.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"need z (N, D) and adjacency (N, N), got {tuple(z.shape)} and {tuple(adjacency_power.shape)}")
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.T
    sim = sim - torch.diag_embed(torch.diagonal(sim))  # zero the diagonal, as Ncontrast does
    e = torch.exp(tau * sim)
    pos = (e * adjacency_power).sum(1)
    return -torch.log(pos / e.sum(1) + 1e-8).mean()
