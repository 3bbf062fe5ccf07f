"""Conformance cases for the GP prior over time and the multi-modal GP-VAE (seed 8; merged into test_conformance.py).

A 2-D batch ``(16, 12)`` through ``gp_prior`` is one trajectory of 16 time steps (the bottleneck's contract).
"""

from __future__ import annotations

import torch

from isthmus.models import AutoEncoder, MultimodalGPVAE


def _batch(shape=(16, 12)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(*shape, generator=g)


def _mm_batch(B=3, T=10, P=16, N=5):
    g = torch.Generator().manual_seed(0)
    return torch.rand(B, T, P, generator=g), torch.poisson(torch.full((B, T, N), 1.5), generator=g)


def _mm(**kw):
    return lambda: MultimodalGPVAE({"image_dim": 16, "n_neurons": 5, "hidden": [8], "lengthscale": 3.0, **kw})


BOTTLENECK_CASES: dict[str, tuple] = {
    "gp_prior": (lambda: AutoEncoder.mlp(12, latent_dim=4, hidden=(16,), bottleneck="gp_prior", lengthscale=3.0),
                 _batch()),
}

MODEL_CASES: dict[str, tuple] = {
    "gp_prior-time-ae": (lambda: AutoEncoder.mlp(12, latent_dim=3, hidden=(16,), bottleneck="gp_prior",
                                                 domain="time", lengthscale=3.0, jitter=1e-2), _batch()),
    "mm-gpvae": (_mm(), _mm_batch()),
    "mm-gpvae-image-bce": (_mm(modalities="image", image_loss="bce"), _mm_batch()),
    "mm-gpvae-neural-time": (_mm(modalities="neural", gp_domain="time", n_neural=2), _mm_batch()),
}
