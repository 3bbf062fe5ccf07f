"""Attentive probe: a frozen encoder's *tokens* read by one learned query (cross-attention) and a linear
classifier — the probe the context autoencoder (Chen et al. 2022) and later masked-modelling papers
report beside the linear probe on pooled features, because masked-image encoders spread class evidence
over a few tokens that mean-pooling dilutes.

Only the probe is trained (AdamW, fixed epochs, full-batch-free minibatches, seeded), on standardised tokens
(statistics of the training split only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from isthmus.metrics._arrays import to_labels, to_numpy

__all__ = ["attentive_probe_accuracy", "AttentiveProbe"]


class AttentiveProbe(nn.Module):
    """One learned query attends over ``(B, T, D)`` tokens (multi-head), then LayerNorm and a linear head."""

    def __init__(self, dim: int, n_classes: int, heads: int = 1) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(tokens.shape[0], -1, -1)
        pooled, _ = self.attn(q, tokens, tokens, need_weights=False)
        return self.head(self.norm(pooled[:, 0]))


def attentive_probe_accuracy(
    tokens_train: Any,
    y_train: Any,
    tokens_test: Any,
    y_test: Any,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 128,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Test accuracy of an :class:`AttentiveProbe` trained on frozen ``(N, T, D)`` tokens."""
    ttr, tte = to_numpy(tokens_train, "tokens_train"), to_numpy(tokens_test, "tokens_test")
    ytr, yte = to_labels(y_train, "y_train"), to_labels(y_test, "y_test")
    if ttr.ndim != 3 or tte.ndim != 3 or ttr.shape[2] != tte.shape[2]:
        raise ValueError(f"tokens must be (N, T, D) with the same D, got {ttr.shape} and {tte.shape}")
    if len(ttr) != ytr.size or len(tte) != yte.size:
        raise ValueError(f"rows and labels differ: {len(ttr)} vs {ytr.size}, {len(tte)} vs {yte.size}")
    if not (np.isfinite(ttr).all() and np.isfinite(tte).all()):
        raise ValueError("tokens contain NaN or inf; a probe on non-finite features is meaningless")
    classes, ytr_idx = np.unique(ytr, return_inverse=True)
    if classes.size < 2:
        raise ValueError("y_train has a single class; a probe needs at least two")
    mean, std = ttr.mean((0, 1)), ttr.std((0, 1)) + 1e-6
    xtr = torch.as_tensor((ttr - mean) / std, dtype=torch.float32)
    xte = torch.as_tensor((tte - mean) / std, dtype=torch.float32)
    target = torch.as_tensor(ytr_idx, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        probe = AttentiveProbe(xtr.shape[2], classes.size)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(probe(xtr[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    probe.eval()
    with torch.no_grad():
        pred = classes[probe(xte).argmax(1).numpy()]
    return float(np.mean(pred == yte))
