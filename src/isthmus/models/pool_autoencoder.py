"""GANprintR's autoencoder (Neves et al. 2020, code ``joaocneves/gan_fingerprint_removal``) and a fake source.

:class:`PoolIndexAutoencoder`: 3×3 convs ``C → 32 → 64 → 128 → code`` with ReLU and a 2×2 max-pool
**with indices** after each of the first three; the decoder mirrors it and un-pools with those
indices (``nn.MaxUnpool2d``), so each maximum returns to the exact pixel it came from — high
frequencies of real images survive, GAN up-sampling patterns do not. MSE loss, trained on reals
only. ``use_indices=False`` is the design ablation: the same code, nearest-neighbour up-sampling.

:class:`Resynthesiser`: the stand-in GAN of the seed-20 card — a stride-2 conv encoder to a 4×4
code and a DCGAN-style stride-2 transposed-conv decoder, trained to re-synthesise real crops (L1);
its outputs have real content but GAN-up-sampled pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput

__all__ = ["PoolAEConfig", "PoolIndexAutoencoder", "ResynthesiserConfig", "Resynthesiser"]


@dataclass
class PoolAEConfig(Config):
    channels: int = 3
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # each followed by a 2×2 max-pool
    code: int = 32  # the README's c
    use_indices: bool = True

    def validate(self) -> None:
        if self.channels < 1 or self.code < 1 or not self.widths or min(self.widths) < 1:
            raise ConfigError("PoolAEConfig: channels, code and every width must be >= 1")


class PoolIndexAutoencoder(nn.Module, Pretrained):
    config_class = PoolAEConfig

    def __init__(self, config: PoolAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or PoolAEConfig()
        ins = [c.channels] + c.widths[:-1]
        self.enc = nn.ModuleList([nn.Conv2d(i, o, 3, padding=1) for i, o in zip(ins, c.widths)])
        self.to_code = nn.Conv2d(c.widths[-1], c.code, 3, padding=1)
        self.from_code = nn.Conv2d(c.code, c.widths[-1], 3, padding=1)
        outs = list(reversed(ins))
        self.dec = nn.ModuleList([nn.Conv2d(i, o, 3, padding=1) for i, o in zip(reversed(c.widths), outs)])

    @property
    def factor(self) -> int:
        return 2 ** len(self.config.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.channels or x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(
                f"PoolIndexAutoencoder expects (B, {self.config.channels}, H, W) with H, W multiples "
                f"of {self.factor}, got {tuple(x.shape)}"
            )
        indices, sizes = [], []
        h = x
        for conv in self.enc:
            h = torch.relu(conv(h))
            sizes.append(h.shape[-2:])
            h, idx = nn.functional.max_pool2d(h, 2, return_indices=True)
            indices.append(idx)
        h = torch.relu(self.from_code(torch.relu(self.to_code(h))))
        for i, conv in enumerate(self.dec):
            idx, size = indices[-1 - i], sizes[-1 - i]
            if self.config.use_indices:
                h = nn.functional.max_unpool2d(h, idx, (2, 2), output_size=list(size))
            else:
                h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = conv(h)
            if i < len(self.dec) - 1:
                h = torch.relu(h)
        return h

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        mse = ((self(x) - x) ** 2).mean()
        return ModelOutput(loss=mse, losses={"mse": mse})


@dataclass
class ResynthesiserConfig(Config):
    channels: int = 3
    widths: list[int] = field(default_factory=lambda: [32, 64, 64])  # 32² → 4×4
    code: int = 64

    def validate(self) -> None:
        if self.channels < 1 or self.code < 1 or not self.widths or min(self.widths) < 1:
            raise ConfigError("ResynthesiserConfig: channels, code and every width must be >= 1")


class Resynthesiser(nn.Module, Pretrained):
    config_class = ResynthesiserConfig

    def __init__(self, config: ResynthesiserConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ResynthesiserConfig()
        enc: list[nn.Module] = []
        prev = c.channels
        for w in c.widths:
            enc += [nn.Conv2d(prev, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            prev = w
        enc.append(nn.Conv2d(prev, c.code, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        prev = c.code
        for w in list(reversed(c.widths)):  # DCGAN generator: 4×4 transposed convs, stride 2, BN + ReLU
            dec += [nn.ConvTranspose2d(prev, w, 4, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            prev = w
        dec += [nn.Conv2d(prev, c.channels, 3, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        l1 = (self(x) - x).abs().mean()
        return ModelOutput(loss=l1, losses={"l1": l1})
