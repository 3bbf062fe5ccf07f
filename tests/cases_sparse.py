"""Conformance cases for the sparse-autoencoder family (merged into test_conformance.py).

Each SAE activation runs inside an MLP AutoEncoder (as a bottleneck) and inside the
SparseAutoEncoder model; JumpReLU gets a wide STE bandwidth so its threshold receives gradient on
a 16-sample batch.
"""

from __future__ import annotations

import torch

from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.models import AutoEncoder


def _batch(shape=(16, 12)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(*shape, generator=g)


def _acts(shape=(16, 12)):
    """Centred, activation-like inputs for the SparseAutoEncoder cases (seed 1: seed 0 would draw
    the same numbers as the model's initial dictionary, making reconstruction exact)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(*shape, generator=g)


def _ae(bottleneck: str, latent_dim: int = 8, **kw):
    return lambda: AutoEncoder.mlp(12, latent_dim=latent_dim, hidden=(16,), bottleneck=bottleneck, **kw)


def _sae(bottleneck: str, **cfg):
    def build():
        sae = SparseAutoEncoder(SAEConfig(d_in=12, d_sae=32, bottleneck=bottleneck, bottleneck_config=cfg,
                                          aux_k=4))
        sae.bottleneck.steps_since_fired[:8] = 10**6  # a few dead latents, so AuxK is exercised
        return sae
    return build


_JUMP = dict(bandwidth=0.5, threshold_init=0.05, l0_coeff=1e-2)

BOTTLENECK_CASES: dict[str, tuple] = {
    "sae_relu": (_ae("sae_relu", l1_coeff=1e-2, l1_warmup_steps=5), _batch()),
    "sae_topk": (_ae("sae_topk", k=3), _batch()),
    "sae_batchtopk": (_ae("sae_batchtopk", k=3), _batch()),
    "sae_jumprelu": (_ae("sae_jumprelu", **_JUMP), _batch()),
    "sae_topafa": (_ae("sae_topafa", k_max=6), _batch()),
    "sae_matryoshka": (_ae("sae_matryoshka", k=3, prefix_fractions=[0.25, 0.5, 1.0]), _batch()),
}

MODEL_CASES: dict[str, tuple] = {
    "sae-relu": (_sae("sae_relu", l1_coeff=1e-2), _acts()),
    "sae-topk-sparse": (_sae("sae_topk", k=4), _acts()),
    "sae-topk-dense": (lambda: SparseAutoEncoder(SAEConfig(d_in=12, d_sae=32, bottleneck_config={"k": 4},
                                                           sparse_backward=False)), _acts()),
    "sae-batchtopk": (_sae("sae_batchtopk", k=4), _acts()),
    "sae-jumprelu": (_sae("sae_jumprelu", **_JUMP), _acts()),
    "sae-topafa": (_sae("sae_topafa"), _acts()),
    "sae-matryoshka": (_sae("sae_matryoshka", k=4, prefix_fractions=[0.25, 0.5, 1.0]), _acts()),
}
