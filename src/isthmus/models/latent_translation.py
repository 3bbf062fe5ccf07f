"""Restoration by latent translation (Wan et al. 2020, "Bringing Old Photos Back to Life"), small.

Two VAEs with spatial latents and a mapping between them:

* VAE1 encodes *both* degraded domains — synthetic old photos X (paired with clean targets) and real
  old photos R (unpaired) — into one latent space; a latent critic through a gradient reversal
  (:func:`isthmus.nn.adversary.domain_adversary_loss`) pushes z_R to look like z_X;
* VAE2 encodes clean photos Y;
* the mapping T is trained on the frozen VAEs' latents of synthetic pairs: ``λ · L1(T(z_X), z_Y)``;
* restoration of any degraded image is ``D2(T(E1(x)))``.

The VAE is the authors' "reduced VAE" (errata of the seed-2 notes, ``Pix2PixHDModel_DA.forward``): the
encoder outputs a mean only, the decoder reads ``z + noise_std · ε`` in training, and the "KL" is
``kl_weight · mean(z²)``. The paper enforces reconstruction through GAN feature matching and VGG
features; here, without VGG weights, an L1 pixel reconstruction stands in (as the errata advise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.adversary import DomainCritic, domain_adversary_loss

__all__ = ["SpatialVAEConfig", "SpatialVAE", "LatentMappingConfig", "LatentMapping", "translate"]


@dataclass
class SpatialVAEConfig(Config):
    channels: int = 1
    widths: list[int] = field(default_factory=lambda: [16, 32])  # one stride-2 stage each
    latent_channels: int = 8
    noise_std: float = 1.0  # decoder input in training: z + noise_std · N(0, I) (the authors' value: 1)
    kl_weight: float = 1.0  # weight of mean(z²), the reduced VAE's "KL"
    adversary_weight: float = 0.0  # > 0: latent critic aligning the second domain with the first
    critic_width: int = 32

    def validate(self) -> None:
        name = type(self).__name__
        if self.channels < 1 or self.latent_channels < 1 or not self.widths or min(self.widths) < 1:
            raise ConfigError(f"{name}: channels, latent_channels and every width must be >= 1")
        if self.noise_std < 0 or self.kl_weight < 0 or self.adversary_weight < 0:
            raise ConfigError(f"{name}: noise_std, kl_weight and adversary_weight must be >= 0")


def _res_block(width: int) -> nn.Module:
    return _Residual(
        nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, padding=1)
        )
    )


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class SpatialVAE(nn.Module, Pretrained):
    """``(B, C, H, W)`` → latent map ``(B, latent_channels, H / 2^k, W / 2^k)`` → image.

    ``compute_loss`` takes one domain (a tensor or ``(x,)``) or two, ``(x_a, x_b)``: both are
    reconstructed, and with ``adversary_weight`` > 0 a critic learns to tell ``z_b`` from ``z_a``
    while, reversed, the encoder makes ``z_b`` look like ``z_a`` (the authors' direction: synthetic
    latents are "real" to the critic, real-old latents are pushed towards them).
    """

    config_class = SpatialVAEConfig

    def __init__(self, config: SpatialVAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or SpatialVAEConfig()
        enc: list[nn.Module] = [nn.Conv2d(c.channels, c.widths[0], 3, padding=1), nn.ReLU(inplace=True)]
        prev = c.widths[0]
        for w in c.widths:
            enc += [nn.Conv2d(prev, w, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            prev = w
        enc += [_res_block(prev), nn.Conv2d(prev, c.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [
            nn.Conv2d(c.latent_channels, prev, 3, padding=1),
            nn.ReLU(inplace=True),
            _res_block(prev),
        ]
        for w in list(reversed(c.widths))[1:] + [c.widths[0]]:
            dec += [nn.ConvTranspose2d(prev, w, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            prev = w
        dec += [nn.Conv2d(prev, c.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.critic = DomainCritic(c.latent_channels, c.critic_width) if c.adversary_weight > 0 else None

    @property
    def factor(self) -> int:
        return 2 ** len(self.config.widths)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.channels:
            raise ValueError(f"SpatialVAE expects (B, {self.config.channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.factor or x.shape[-1] % self.factor:
            raise ValueError(
                f"SpatialVAE input height and width must be multiples of {self.factor}, got {tuple(x.shape[-2:])}"
            )
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (the mean latent, no decoder noise)."""
        return self.decode(self.encode(x))

    def _domain_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        noisy = z + self.config.noise_std * torch.randn_like(z) if self.training else z
        recon = self.decode(noisy)
        return z, (recon - x).abs().mean(), z.pow(2).mean()

    def compute_loss(self, batch: Any) -> ModelOutput:
        xs = [batch] if isinstance(batch, torch.Tensor) else list(batch)
        if not 1 <= len(xs) <= 2:
            raise ValueError(f"SpatialVAE trains on one domain or two (x_a, x_b), got {len(xs)} tensors")
        terms = [self._domain_terms(x) for x in xs]
        recon = sum(t[1] for t in terms) / len(terms)
        kl = sum(t[2] for t in terms) / len(terms)
        losses: dict[str, torch.Tensor] = {
            "recon_l1": torch.as_tensor(recon),
            "kl": self.config.kl_weight * torch.as_tensor(kl),
        }
        if self.critic is not None:
            if len(xs) != 2:
                raise ValueError("a SpatialVAE with adversary_weight > 0 trains on two domains: pass (x_a, x_b)")
            n = min(len(xs[0]), len(xs[1]))  # equal counts per domain, as the authors truncate
            losses["adversary"] = self.config.adversary_weight * domain_adversary_loss(
                self.critic, terms[0][0][:n], terms[1][0][:n]
            )
        return ModelOutput(loss=torch.stack(list(losses.values())).sum(), losses=losses, latent=terms[0][0])

    @torch.no_grad()
    def encode_array(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        was = self.training
        self.eval()
        try:
            return np.concatenate(
                [self.encode(torch.as_tensor(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
            )
        finally:
            self.train(was)


@dataclass
class LatentMappingConfig(Config):
    latent_channels: int = 8
    width: int = 64
    blocks: int = 2  # residual blocks (the paper: 6)
    l1_weight: float = 60.0  # the authors' --l2_feat 60 with --use_l1_feat

    def validate(self) -> None:
        if self.latent_channels < 1 or self.width < 1 or self.blocks < 0:
            raise ConfigError("LatentMappingConfig: latent_channels and width must be >= 1, blocks >= 0")


class LatentMapping(nn.Module, Pretrained):
    """T: latent map of one VAE → latent map of another; ``compute_loss((z_src, z_tgt))`` = λ·L1."""

    config_class = LatentMappingConfig

    def __init__(self, config: LatentMappingConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or LatentMappingConfig()
        self.net = nn.Sequential(
            nn.Conv2d(c.latent_channels, c.width, 3, padding=1),
            nn.ReLU(inplace=True),
            *[_res_block(c.width) for _ in range(c.blocks)],
            nn.Conv2d(c.width, c.latent_channels, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def compute_loss(self, batch: Any) -> ModelOutput:
        z_src, z_tgt = batch
        if z_src.shape != z_tgt.shape:
            raise ValueError(
                f"source and target latents differ in shape: {tuple(z_src.shape)} vs "
                f"{tuple(z_tgt.shape)}; both VAEs need the same latent size"
            )
        l1 = self.config.l1_weight * (self(z_src) - z_tgt.detach()).abs().mean()
        return ModelOutput(loss=l1, losses={"latent_l1": l1})


@torch.no_grad()
def translate(
    vae_src: SpatialVAE, mapping: LatentMapping, vae_tgt: SpatialVAE, x: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Restore ``x`` as ``D_tgt(T(E_src(x)))`` (no decoder noise), clipped to [0, 1]."""
    mods: tuple[nn.Module, ...] = (vae_src, mapping, vae_tgt)
    was = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        out = [
            vae_tgt.decode(mapping(vae_src.encode(torch.as_tensor(x[i : i + batch_size])))).numpy()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        for m, w in zip(mods, was):
            m.train(w)
    return np.clip(np.concatenate(out), 0.0, 1.0)
