"""A small convolutional VAE with named encoder taps and decoder injection points (an SD-VAE in miniature).

Downsampling factor 8 (``levels = 3``), a ``latent_channels``-channel Gaussian latent. The encoder
returns its taps in LaDI-VTON's order — the ``conv_in`` output twice, then the output of each
downsampling stage (fine to coarse) — and :meth:`SkipVAE.decode` adds optional ``skips`` in the
decoder's order (coarsest first): the inputs of the up-blocks, then the last one after the output
norm + activation, just before ``conv_out`` (errata seed 40 §2). :meth:`tap_channels` and
:meth:`skip_channels` give the widths a :class:`~isthmus.nn.emasc.MaskAwareSkip` needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained

__all__ = ["SkipVAEConfig", "SkipVAE"]


@dataclass
class SkipVAEConfig(Config):
    channels: tuple[int, ...] = (32, 32, 64, 64)  # full res, /2, /4, /8
    latent_channels: int = 4
    groups: int = 8

    def validate(self) -> None:
        if len(self.channels) != 4 or min(self.channels) < 1 or self.latent_channels < 1:
            raise ConfigError(f"SkipVAEConfig needs 4 positive channel widths, got {self.channels}")
        if any(c % self.groups for c in self.channels):
            raise ConfigError(f"every channel width must be divisible by groups={self.groups}: {self.channels}")


class _Res(nn.Module):
    def __init__(self, ci: int, co: int, groups: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(groups, ci),
            nn.SiLU(),
            nn.Conv2d(ci, co, 3, padding=1),
            nn.GroupNorm(groups, co),
            nn.SiLU(),
            nn.Conv2d(co, co, 3, padding=1),
        )
        self.short = nn.Conv2d(ci, co, 1) if ci != co else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.net(x)


class SkipVAE(Pretrained, nn.Module):
    config_class = SkipVAEConfig

    def __init__(self, config: SkipVAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or SkipVAEConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        c.validate()
        c0, c1, c2, c3 = c.channels
        g = c.groups
        self.conv_in = nn.Conv2d(3, c0, 3, padding=1)
        self.down = nn.ModuleList([_Res(a, b, g) for a, b in ((c0, c1), (c1, c2), (c2, c3))])
        self.pool = nn.ModuleList([nn.Conv2d(b, b, 3, stride=2, padding=1) for b in (c1, c2, c3)])
        self.enc_mid = _Res(c3, c3, g)
        self.enc_out = nn.Sequential(nn.GroupNorm(g, c3), nn.SiLU(), nn.Conv2d(c3, 2 * c.latent_channels, 3, padding=1))
        self.dec_in = nn.Conv2d(c.latent_channels, c3, 3, padding=1)
        self.dec_mid = _Res(c3, c3, g)
        self.up = nn.ModuleList([_Res(a, b, g) for a, b in ((c3, c3), (c3, c2), (c2, c1), (c1, c0))])
        self.upconv = nn.ModuleList([nn.Conv2d(b, b, 3, padding=1) for b in (c3, c2, c1)])
        self.dec_norm = nn.Sequential(nn.GroupNorm(g, c0), nn.SiLU())
        self.conv_out = nn.Conv2d(c0, 3, 3, padding=1)

    def tap_channels(self) -> list[int]:
        c0, c1, c2, c3 = self.config.channels
        return [c0, c0, c1, c2, c3]

    def skip_channels(self) -> list[int]:
        """Widths at the injection points, in the taps' order (tap 0 → before conv_out, tap 4 → up-block 0)."""
        c0, c1, c2, c3 = self.config.channels
        return [c0, c1, c2, c3, c3]

    def encode_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Images ``(B, 3, H, W)`` in [0, 1] → ``(mu, logvar, taps)``."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"expected (B, 3, H, W) images with H, W multiples of 8, got {tuple(x.shape)}")
        h = self.conv_in(x * 2 - 1)
        taps = [h, h]
        for res, pool in zip(self.down, self.pool):
            h = pool(res(h))
            taps.append(h)
        mu, logvar = self.enc_out(self.enc_mid(h)).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20), taps

    def decode(self, z: torch.Tensor, skips: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Latents → images in [0, 1]; ``skips`` in the taps' order are added at their injection points."""
        if skips is not None and len(skips) != 5:
            raise ValueError(f"expected 5 skip tensors (one per tap), got {len(skips)}")
        h = self.dec_mid(self.dec_in(z))
        for i, res in enumerate(self.up):
            if skips is not None:
                h = h + skips[4 - i]
            h = res(h)
            if i < 3:
                h = self.upconv[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.dec_norm(h)
        if skips is not None:
            h = h + skips[0]
        return torch.sigmoid(self.conv_out(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar, _ = self.encode_features(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar
