"""NeRV-family video representations: frame index → frame (Chen et al. 2021; NeRV++, Ghorbel et al. 2024).

One module, two block types: ``block="nerv"`` stacks :class:`~isthmus.nn.inr.NeRVBlock` s (Conv3×3 +
PixelShuffle), ``block="nerv++"`` stacks :class:`~isthmus.nn.inr.NeRVPlusBlock` s (gated-CNN and conv-FFN
residuals around the upsampling, bilinear skip). Both share the positional encoding, the gated-MLP stem
(NeRV++'s; NeRV's original is a plain MLP — one stem keeps the comparison about the blocks) and the head
(1×1 conv to RGB, ``(tanh + 1)/2``). Channel widths follow NeRV: the first stage has ``fc_dim·expansion``
channels, later stages divide by ``reduction`` down to ``lower_width``; :func:`match_width` picks the
``fc_dim`` that gives a target parameter count, for equal-parameter comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.nn.inr import GatedMLP, NeRVBlock, NeRVPlusBlock, nerv_positional_encoding

__all__ = ["NeRVConfig", "NeRV", "match_width"]

BLOCKS = ("nerv", "nerv++")


@dataclass
class NeRVConfig(Config):
    block: str = "nerv++"
    fc_h: int = 3
    fc_w: int = 4
    fc_dim: int = 64
    strides: tuple[int, ...] = (2, 2, 2, 2)
    expansion: float = 1.0
    reduction: int = 2
    lower_width: int = 16
    stem_dim: int = 128
    pe_base: float = 1.25
    pe_levels: int = 40
    act: str = "swish"
    skip: bool = True  # NeRV++ ablation switches
    residual_blocks: bool = True

    def validate(self) -> None:
        if self.block not in BLOCKS:
            raise ConfigError(f"NeRVConfig.block must be one of {BLOCKS}, got {self.block!r}")
        if min(self.fc_h, self.fc_w, self.fc_dim, self.stem_dim, self.lower_width, self.pe_levels) < 1:
            raise ConfigError("NeRVConfig sizes (fc_h, fc_w, fc_dim, stem_dim, lower_width, pe_levels) must be >= 1")
        if not self.strides or any(s < 1 for s in self.strides) or self.reduction < 1:
            raise ConfigError(f"NeRVConfig needs strides >= 1 and reduction >= 1, got {self.strides}, {self.reduction}")

    @property
    def frame_size(self) -> tuple[int, int]:
        k = 1
        for s in self.strides:
            k *= s
        return self.fc_h * k, self.fc_w * k


class NeRV(Pretrained, nn.Module):
    config_class = NeRVConfig

    def __init__(self, config: NeRVConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or NeRVConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        c.validate()
        self.stem = GatedMLP(2 * c.pe_levels, c.stem_dim, c.fc_h * c.fc_w * c.fc_dim)
        blocks: list[nn.Module] = []
        ngf = c.fc_dim
        for i, s in enumerate(c.strides):
            new = int(ngf * c.expansion) if i == 0 else max(ngf // (1 if s == 1 else c.reduction), c.lower_width)
            if c.block == "nerv":
                blocks.append(NeRVBlock(ngf, new, s, c.act))
            else:
                blocks.append(NeRVPlusBlock(ngf, new, s, c.act, skip=c.skip, residual_blocks=c.residual_blocks))
            ngf = new
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(ngf, 3, 1)
        self.apply(_init)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Frame positions ``t`` ``(B,)`` in [0, 1) → frames ``(B, 3, H, W)`` in [0, 1]."""
        c = self.config
        h = self.stem(nerv_positional_encoding(t, c.pe_base, c.pe_levels)).view(-1, c.fc_dim, c.fc_h, c.fc_w)
        return (torch.tanh(self.head(self.blocks(h))) + 1) * 0.5

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init(m: nn.Module) -> None:
    """The authors' init: Xavier-uniform convs, trunc-normal(0.02) linears, zero biases."""
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)
    elif isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
    if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
        nn.init.zeros_(m.bias)


def match_width(config: NeRVConfig, target_params: int, lo: int = 4, hi: int = 1024) -> NeRVConfig:
    """The ``fc_dim`` (and, with it, every stage width) whose parameter count is closest to ``target_params``."""
    best, best_err = config, float("inf")
    for d in range(lo, hi + 1):
        n = NeRV(config.with_overrides({"fc_dim": d})).n_params()
        if abs(n - target_params) < best_err:
            best, best_err = config.with_overrides({"fc_dim": d}), abs(n - target_params)
        if n > target_params:
            break
    return best
