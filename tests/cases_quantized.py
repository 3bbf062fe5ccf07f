"""Conformance cases for the quantized bottlenecks (merged into test_conformance.py)."""

from __future__ import annotations

import torch

from isthmus.models import AutoEncoder


def _batch(shape=(16, 12)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(*shape, generator=g)


def _ae(bottleneck: str, latent_dim: int = 4, **kw):
    return lambda: AutoEncoder.mlp(12, latent_dim=latent_dim, hidden=(16,), bottleneck=bottleneck, **kw)


BOTTLENECK_CASES: dict[str, tuple] = {
    "vq": (_ae("vq", codebook_size=8, groups=2, dead_code_steps=1), _batch()),
    "residual_vq": (_ae("residual_vq", codebook_size=8, n_quantizers=3, ema=False), _batch()),
    "fsq": (_ae("fsq", levels=[8, 5, 5, 4]), _batch()),
    "scalar_codebooks": (_ae("scalar_codebooks", n_values=6), _batch()),
    "quantized_gaussian": (_ae("quantized_gaussian", step=0.25, objective={"jacobian_weight": 0.1}), _batch()),
    "key_value": (
        _ae("key_value", latent_dim=8, input_dim=6, heads=4, key_dim=3, num_keys=8, decoding="concat"),
        _batch(),
    ),
}
