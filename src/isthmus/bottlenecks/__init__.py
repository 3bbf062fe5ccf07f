"""Bottlenecks: one file per family, each an ``nn.Module`` returning :class:`BottleneckOutput`.

Build one by name: ``build_bottleneck("gaussian", latent_dim=8, beta=4.0)``.
"""

from isthmus.bottlenecks.base import (
    BOTTLENECKS,
    Bottleneck,
    BottleneckConfig,
    BottleneckOutput,
    build_bottleneck,
)
from isthmus.bottlenecks.gaussian import GaussianBottleneck, GaussianConfig
from isthmus.bottlenecks.identity import IdentityBottleneck, IdentityConfig

__all__ = [
    "BOTTLENECKS",
    "Bottleneck",
    "BottleneckConfig",
    "BottleneckOutput",
    "build_bottleneck",
    "GaussianBottleneck",
    "GaussianConfig",
    "IdentityBottleneck",
    "IdentityConfig",
]
