"""Gaussian (VAE) bottleneck with β, KL warm-up and free bits.

Kingma & Welling, "Auto-Encoding Variational Bayes" (arXiv 1312.6114); β-VAE (Higgins et al. 2017);
free bits (Kingma et al., arXiv 1606.04934). The encoder outputs ``2 * latent_dim`` numbers per
sample: the mean and the log-variance of q(z|x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.config import ConfigError


@dataclass
class GaussianConfig(BottleneckConfig):
    """``beta`` weights the KL; it ramps linearly from 0 over ``kl_warmup_steps`` (0 = no warm-up).

    ``free_bits`` (nats per latent dimension, batch-averaged) stops the KL of a dimension from
    being pushed below that floor, which fights posterior collapse.
    """

    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    logvar_clamp: float = 12.0  # keeps exp(logvar) finite early in training

    def validate(self) -> None:
        super().validate()
        if self.beta < 0:
            raise ConfigError(f"GaussianConfig.beta must be >= 0, got {self.beta}")
        if self.kl_warmup_steps < 0:
            raise ConfigError(f"GaussianConfig.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.free_bits < 0:
            raise ConfigError(f"GaussianConfig.free_bits must be >= 0, got {self.free_bits}")


@BOTTLENECKS.register("gaussian", GaussianConfig)
class GaussianBottleneck(Bottleneck):
    """Reparameterised Gaussian posterior, standard-normal prior.

    ``codes`` holds the posterior mean, ``stats`` the raw KL per sample and per dimension.
    In eval mode the latent is the posterior mean (deterministic encode).
    """

    config: GaussianConfig

    def __init__(self, config: GaussianConfig | None = None) -> None:
        super().__init__(config or GaussianConfig())

    @property
    def in_features(self) -> int:
        return 2 * self.config.latent_dim

    def kl_weight(self) -> float:
        cfg = self.config
        if cfg.kl_warmup_steps <= 0:
            return cfg.beta
        return cfg.beta * min(1.0, float(self.step.item()) / cfg.kl_warmup_steps)

    # Hooks that subclasses (ARD prior, β-TCVAE) override; the forward below stays shared.
    def posterior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (clamped) log-variance of q(z|x) from the encoder output ``h`` (B, 2D)."""
        mu, logvar = h.chunk(2, dim=1)  # (B, D) each
        return mu, logvar.clamp(-self.config.logvar_clamp, self.config.logvar_clamp)

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Analytic KL(q(z|x) || p(z)) per sample and dimension, ``(B, D)``; p = N(0, I) here."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per sample, ``(B,)`` (used by the importance-sampled likelihood)."""
        return (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        mu, logvar = self.posterior(h)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        kl_per_dim = self.kl_per_dim(mu, logvar)  # (B, D)
        kl_dim_mean = kl_per_dim.mean(0)  # (D,)
        if self.config.free_bits > 0:
            kl = kl_dim_mean.clamp(min=self.config.free_bits).sum()
        else:
            kl = kl_dim_mean.sum()
        return BottleneckOutput(
            latent=z,
            codes=mu,
            losses={"kl": self.kl_weight() * kl},
            stats={
                "kl": kl_dim_mean.sum().detach(),
                "kl_per_dim": kl_dim_mean.detach(),
                "kl_weight": self.kl_weight(),
                "active_units": (kl_dim_mean.detach() > 0.01).sum().float(),
            },
        )

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, generator=generator)
