"""Building blocks (torch only): MLPs and conv encoders/decoders."""

from isthmus.nn.conv import ConvDecoder, ConvDecoderConfig, ConvEncoder, ConvEncoderConfig
from isthmus.nn.layers import activation, init_weights
from isthmus.nn.mlp import MLP, MLPConfig

__all__ = [
    "MLP",
    "MLPConfig",
    "ConvEncoder",
    "ConvEncoderConfig",
    "ConvDecoder",
    "ConvDecoderConfig",
    "activation",
    "init_weights",
]

from isthmus.registry import BLOCKS as _BLOCKS

_BLOCKS.register("mlp", MLPConfig)(MLP)
_BLOCKS.register("conv_encoder", ConvEncoderConfig)(ConvEncoder)
_BLOCKS.register("conv_decoder", ConvDecoderConfig)(ConvDecoder)
