"""Building blocks (torch only): MLPs, conv encoders/decoders, trainable low-rank layers."""

from isthmus.nn.conv import ConvDecoder, ConvDecoderConfig, ConvEncoder, ConvEncoderConfig
from isthmus.nn.graph import GraphLearner, GraphLearnerConfig, mix_nodes
from isthmus.nn.layers import activation, init_weights
from isthmus.nn.low_rank import (
    LowRankLinear,
    LowRankLinearConfig,
    low_rank_losses,
    prune_low_rank,
    set_rank_fraction,
    svd_truncated_copy,
)
from isthmus.nn.mlp import MLP, MLPConfig

__all__ = [
    "GraphLearner",
    "GraphLearnerConfig",
    "mix_nodes",
    "MLP",
    "MLPConfig",
    "ConvEncoder",
    "ConvEncoderConfig",
    "ConvDecoder",
    "ConvDecoderConfig",
    "activation",
    "init_weights",
    "LowRankLinear",
    "LowRankLinearConfig",
    "low_rank_losses",
    "prune_low_rank",
    "set_rank_fraction",
    "svd_truncated_copy",
]

from isthmus.registry import BLOCKS as _BLOCKS

_BLOCKS.register("mlp", MLPConfig)(MLP)
_BLOCKS.register("conv_encoder", ConvEncoderConfig)(ConvEncoder)
_BLOCKS.register("conv_decoder", ConvDecoderConfig)(ConvDecoder)
_BLOCKS.register("low_rank_linear", LowRankLinearConfig)(LowRankLinear)
