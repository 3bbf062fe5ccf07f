"""Convolutional encoder/decoder for images ``(B, C, H, W)``.

The encoder halves the resolution ``len(channels)`` times with stride-2 convs and ends in a linear
map to ``out_dim``; the decoder mirrors it with transposed convs. ``image_size`` must be divisible
by ``2 ** len(channels)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.nn.layers import ACTIVATION_NAMES, activation


@dataclass
class ConvEncoderConfig(Config):
    in_channels: int = 1
    image_size: int = 28
    channels: list[int] = field(default_factory=lambda: [32, 64])
    out_dim: int = 16
    activation: str = "relu"

    def validate(self) -> None:
        _check_conv(self.image_size, self.channels, self.activation, type(self).__name__)


@dataclass
class ConvDecoderConfig(Config):
    in_dim: int = 16
    out_channels: int = 1
    image_size: int = 28
    channels: list[int] = field(default_factory=lambda: [64, 32])
    activation: str = "relu"
    out_activation: str = "sigmoid"

    def validate(self) -> None:
        _check_conv(self.image_size, self.channels, self.activation, type(self).__name__)
        if self.out_activation not in ACTIVATION_NAMES:
            raise ConfigError(f"{type(self).__name__}.out_activation: {self.out_activation!r} unknown")


def _check_conv(size: int, channels: list[int], act: str, name: str) -> None:
    if not channels:
        raise ConfigError(f"{name}.channels must list at least one channel count")
    factor = 2 ** len(channels)
    if size % factor:
        raise ConfigError(
            f"{name}.image_size={size} must be divisible by 2**len(channels)={factor}; "
            "pad/resize the images or use fewer conv stages"
        )
    if act not in ACTIVATION_NAMES:
        raise ConfigError(f"{name}.activation: {act!r} not in {list(ACTIVATION_NAMES)}")


class ConvEncoder(nn.Module):
    """``(B, C, H, W)`` → ``(B, out_dim)``."""

    def __init__(self, config: ConvEncoderConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or ConvEncoderConfig()
        if overrides:
            config = config.with_overrides(overrides)
        self.config = config
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), activation(config.activation)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.channels)
        self.head = nn.Linear(c_in * side * side, config.out_dim)

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.config.in_channels, self.config.image_size
        if x.dim() == 2 and x.shape[1] == c * s * s:
            x = x.view(-1, c, s, s)  # flat pixels -> (B, C, H, W)
        if x.dim() != 4 or x.shape[1:] != (c, s, s):
            raise ValueError(f"ConvEncoder expects images of shape (B, {c}, {s}, {s}), got {tuple(x.shape)}")
        return self.head(self.conv(x).flatten(1))


class ConvDecoder(nn.Module):
    """``(B, in_dim)`` → ``(B, C, H, W)``."""

    def __init__(self, config: ConvDecoderConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or ConvDecoderConfig()
        if overrides:
            config = config.with_overrides(overrides)
        self.config = config
        self.side = config.image_size // 2 ** len(config.channels)
        self.fc = nn.Linear(config.in_dim, config.channels[0] * self.side * self.side)
        layers: list[nn.Module] = []
        chans = [*config.channels, config.out_channels]
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            layers.append(activation(config.activation if i < len(chans) - 2 else config.out_activation))
        self.deconv = nn.Sequential(activation(config.activation), *layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.config.channels[0], self.side, self.side)  # (B, C0, s, s)
        return self.deconv(h)
