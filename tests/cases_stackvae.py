"""Conformance cases for StackVAE-G (merged into test_conformance.py): with the graph and without (λ = 0)."""

from __future__ import annotations

import torch

from isthmus.models.stackvae import StackVAEG, StackVAEGConfig


def _windows(shape=(8, 6, 5)):
    g = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=g)


def _model(**kw):
    return lambda: StackVAEG(StackVAEGConfig(n_channels=5, window=6, hidden=[12, 12], latent_dim=3, embed_dim=4,
                                             k=2, graph_init_scale=0.5, **kw))


MODEL_CASES: dict[str, tuple] = {
    "stackvae-g": (_model(), _windows()),
    "stackvae-g-no-graph": (_model(graph_weight=0.0), _windows()),
}
