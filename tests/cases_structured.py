"""Conformance cases for the structured continuous latents of issue 7 (merged into test_conformance.py)."""

from __future__ import annotations

import torch

from isthmus.bottlenecks import build_bottleneck
from isthmus.models import AutoEncoder, MatryoshkaAutoEncoder, PrototypeClassifier
from isthmus.nn import MLP, LowRankLinear, LowRankLinearConfig, MLPConfig


def _batch(shape=(16, 12)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(*shape, generator=g)


def _labels(n=16, k=3):
    return torch.arange(n) % k


def _ae(bottleneck: str, latent_dim: int = 4, **kw):
    return lambda: AutoEncoder.mlp(12, latent_dim=latent_dim, hidden=(16,), bottleneck=bottleneck, **kw)


def _trained_ard():
    """An ARD AE whose prior was re-estimated once, so save/load must carry τ² in the weights."""
    model = AutoEncoder.mlp(12, latent_dim=4, hidden=(16,), bottleneck="ard", beta=0.5)
    with torch.no_grad():
        model.bottleneck.update_prior(model.encoder(_batch((32, 12))))
    return model


def _low_rank_ae():
    """A LowRankLinear encoder (ordered dropout on) saved and rebuilt through the BLOCKS registry."""
    enc = LowRankLinear(LowRankLinearConfig(in_dim=12, out_dim=4, rank=4))
    dec = MLP(MLPConfig(in_dim=4, out_dim=12, hidden=[16]))
    return AutoEncoder(enc, build_bottleneck("identity", latent_dim=4), dec)


BOTTLENECK_CASES: dict[str, tuple] = {
    "ard": (_trained_ard, _batch()),
    "tcvae": (_ae("tcvae", tc_weight=6.0, dataset_size=1000, kl_warmup_steps=5), _batch()),
    "prototype": (_ae("prototype", n_prototypes=5, n_classes=3), _batch()),
}

MODEL_CASES: dict[str, tuple] = {
    "matryoshka-ae": (lambda: MatryoshkaAutoEncoder.mlp(12, latent_dim=8, hidden=(16,),
                                                        matryoshka={"prefix_dims": [2, 4], "prefix_weights": [1, 1, 2]}),
                      _batch()),
    "matryoshka-vae": (lambda: MatryoshkaAutoEncoder.mlp(12, latent_dim=4, hidden=(16,), bottleneck="gaussian"), _batch()),
    "prototype-classifier": (lambda: PrototypeClassifier.mlp(12, latent_dim=4, hidden=(16,), n_prototypes=5, n_classes=3),
                             (_batch(), _labels())),
    "prototype-classifier-conv": (
        lambda: PrototypeClassifier.conv(image_size=8, in_channels=1, latent_dim=6, channels=(4,),
                                         n_prototypes=4, n_classes=3, class_weight=5.0),
        (_batch((6, 1, 8, 8)), _labels(6))),
    "low-rank-ae": (_low_rank_ae, _batch()),
}
