"""A small U-Net for image-to-image maps (restoration, enhancement), fully convolutional.

``channels[i]`` is the width of level ``i``; each level is two 3×3 conv + ReLU, levels are joined by
2×2 max-pooling on the way down and a 2×2 transposed conv + skip concatenation on the way up. With
``residual`` (and ``in_channels == out_channels``) the net predicts a correction added to its input,
so an untrained net starts near the identity — the usual restoration parametrisation and a much
shorter way to a good PSNR than predicting the image from scratch. Height and width must be
multiples of :attr:`UNet.multiple` (``2 ** (len(channels) - 1)``); :mod:`isthmus.tasks.restore`
pads arbitrary images to that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from isthmus.config import Config, ConfigError

__all__ = ["UNetConfig", "UNet", "count_parameters"]


@dataclass
class UNetConfig(Config):
    in_channels: int = 3
    out_channels: int = 3
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    residual: bool = True

    def validate(self) -> None:
        name = type(self).__name__
        if self.in_channels < 1 or self.out_channels < 1:
            raise ConfigError(
                f"{name}: in_channels and out_channels must be >= 1, got {self.in_channels}, {self.out_channels}"
            )
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigError(f"{name}.channels must be a non-empty list of positive widths, got {self.channels}")
        if self.residual and self.in_channels != self.out_channels:
            raise ConfigError(
                f"{name}.residual adds the input to the output, so in_channels ({self.in_channels}) "
                f"must equal out_channels ({self.out_channels}); set residual: false"
            )


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """``(B, in_channels, H, W)`` → ``(B, out_channels, H, W)``; H, W multiples of :attr:`multiple`."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        ch = config.channels
        self.down = nn.ModuleList(
            [_block(config.in_channels, ch[0])] + [_block(ch[i - 1], ch[i]) for i in range(1, len(ch))]
        )
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i], ch[i - 1], 2, stride=2) for i in range(len(ch) - 1, 0, -1)])
        self.merge = nn.ModuleList([_block(2 * ch[i - 1], ch[i - 1]) for i in range(len(ch) - 1, 0, -1)])
        self.head = nn.Conv2d(ch[0], config.out_channels, 1)
        if config.residual:  # start at the identity map: the correction is zero before training
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]  # Conv2d(bias=True) has a bias

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(skips, bottleneck)``: the features a decoder (or a domain critic on the bottleneck) reads."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"UNet expects (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        m = self.multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"UNet input height and width must be multiples of {m}, got {tuple(x.shape[-2:])}; "
                "pad the image (isthmus.tasks.restore does) or use fewer levels"
            )
        skips = []
        h = x
        for i, block in enumerate(self.down):
            if i:
                h = nn.functional.max_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        return skips[:-1], skips[-1]

    def _decode_features(self, skips: list[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        h = bottleneck
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            h = merge(torch.cat([up(h), skip], dim=1))
        return h

    def decode(self, skips: list[torch.Tensor], bottleneck: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self._decode_features(skips, bottleneck))
        return x + out if self.config.residual else out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The full-resolution feature map before the 1×1 head, ``(B, channels[0], H, W)`` (what a prior
        network conditions another network with)."""
        return self._decode_features(*self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, bottleneck = self.encode(x)
        return self.decode(skips, bottleneck, x)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
