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
from isthmus.bottlenecks.quantized_gaussian import QuantizedGaussianBottleneck, QuantizedGaussianConfig
from isthmus.bottlenecks.identity import IdentityBottleneck, IdentityConfig
from isthmus.bottlenecks.codebook_stats import codebook_stats
from isthmus.bottlenecks.ariel import ArithmeticVolumeCoder, BigramLM  # AriEL (issue 6)
from isthmus.bottlenecks.fsq import FSQBottleneck, FSQConfig
from isthmus.bottlenecks.key_value import KeyValueBottleneck, KeyValueConfig
from isthmus.bottlenecks.scalar_codebooks import ScalarCodebooksBottleneck, ScalarCodebooksConfig
from isthmus.bottlenecks.vq import ResidualVQBottleneck, ResidualVQConfig, VectorQuantizer, VQBottleneck, VQConfig
from isthmus.bottlenecks.ard import ARDBottleneck, ARDConfig  # structured continuous family (issue 7)
from isthmus.bottlenecks.matryoshka import MatryoshkaConfig, nested_latents, prefix_mask
from isthmus.bottlenecks.prototype import PrototypeBottleneck, PrototypeConfig
from isthmus.bottlenecks.tcvae import TCVAEBottleneck, TCVAEConfig
from isthmus.bottlenecks.gp_prior import GPPriorBottleneck, GPPriorConfig  # GP prior over time (seed 8)
from isthmus.bottlenecks.sparse import (  # sparse autoencoder family (issue 3)
    BatchTopKBottleneck,
    JumpReLUBottleneck,
    MatryoshkaSAEBottleneck,
    ReLUL1Bottleneck,
    SparseBottleneck,
    TopAFABottleneck,
    TopKBottleneck,
)

__all__ = [
    "BOTTLENECKS",
    "Bottleneck",
    "BottleneckConfig",
    "BottleneckOutput",
    "build_bottleneck",
    "GaussianBottleneck",
    "GaussianConfig",
    "QuantizedGaussianBottleneck",
    "QuantizedGaussianConfig",
    "IdentityBottleneck",
    "IdentityConfig",
    # quantized family (issue 6)
    "codebook_stats",
    "ArithmeticVolumeCoder",
    "BigramLM",
    "FSQBottleneck",
    "FSQConfig",
    "KeyValueBottleneck",
    "KeyValueConfig",
    "ScalarCodebooksBottleneck",
    "ScalarCodebooksConfig",
    "VectorQuantizer",
    "VQBottleneck",
    "VQConfig",
    "ResidualVQBottleneck",
    "ResidualVQConfig",
    # structured continuous family (issue 7)
    "ARDBottleneck",
    "ARDConfig",
    "MatryoshkaConfig",
    "nested_latents",
    "prefix_mask",
    "PrototypeBottleneck",
    "PrototypeConfig",
    "TCVAEBottleneck",
    "TCVAEConfig",
    "GPPriorBottleneck",
    "GPPriorConfig",
    # sparse autoencoder family (issue 3)
    "SparseBottleneck",
    "ReLUL1Bottleneck",
    "TopKBottleneck",
    "BatchTopKBottleneck",
    "JumpReLUBottleneck",
    "TopAFABottleneck",
    "MatryoshkaSAEBottleneck",
]
