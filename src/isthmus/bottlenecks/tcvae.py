"""β-TCVAE: the Gaussian VAE with its KL split into index-code MI, total correlation and dimension-wise KL.

Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in Variational Autoencoders"
(arXiv 1802.04942). With the aggregate posterior q(z) estimated by minibatch-weighted sampling (MWS)
over a batch of M drawn from a dataset of N,

    log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N·M)

and likewise per dimension for Π_d q(z_d), the batch-averaged KL decomposes as

    MI  = E[log q(z|x) − log q(z)],   TC = E[log q(z) − Σ_d log q(z_d)],   dim-KL = E[Σ_d log q(z_d) − log p(z)].

The loss is ``kl_weight() · (mi_weight·MI + tc_weight·TC + dim_kl_weight·dimKL)``, where
``kl_weight()`` is the Gaussian bottleneck's β with its warm-up; β-TCVAE is ``tc_weight`` > 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from isthmus.bottlenecks.base import BOTTLENECKS, BottleneckOutput
from isthmus.bottlenecks.gaussian import GaussianBottleneck, GaussianConfig
from isthmus.config import ConfigError

__all__ = ["TCVAEConfig", "TCVAEBottleneck", "mws_log_densities"]


@dataclass
class TCVAEConfig(GaussianConfig):
    """``dataset_size`` is N in the MWS estimate (0 = the batch size; it only shifts the MI/TC
    values by a constant, not their gradients). ``free_bits`` does not apply to the decomposition.
    """

    mi_weight: float = 1.0
    tc_weight: float = 6.0
    dim_kl_weight: float = 1.0
    dataset_size: int = 0

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        for field_name in ("mi_weight", "tc_weight", "dim_kl_weight"):
            if getattr(self, field_name) < 0:
                raise ConfigError(f"{name}.{field_name} must be >= 0, got {getattr(self, field_name)}")
        if self.dataset_size < 0:
            raise ConfigError(f"{name}.dataset_size must be >= 0 (0 = batch size), got {self.dataset_size}")
        if self.free_bits != 0:
            raise ConfigError(f"{name}.free_bits is not supported by the TC decomposition; set it to 0")


def mws_log_densities(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log q(z_i|x_i), log q(z_i) and Σ_d log q(z_id) by minibatch-weighted sampling, each ``(M,)``."""
    m = z.shape[0]
    n = dataset_size or m
    # log N(z_i,d ; mu_j,d, var_j,d) for every pair (i, j): (M, M, D)
    diff = z.unsqueeze(1) - mu.unsqueeze(0)
    logq = -0.5 * (diff.pow(2) * torch.exp(-logvar).unsqueeze(0) + logvar.unsqueeze(0) + math.log(2 * math.pi))
    log_nm = math.log(n * m)
    log_qzx = logq.diagonal(dim1=0, dim2=1).sum(0)  # (M,) diagonal is (D, M)
    log_qz = torch.logsumexp(logq.sum(2), dim=1) - log_nm  # (M,)
    log_qz_prod = (torch.logsumexp(logq, dim=1) - log_nm).sum(1)  # (M,)
    return log_qzx, log_qz, log_qz_prod


@BOTTLENECKS.register("tcvae", TCVAEConfig)
class TCVAEBottleneck(GaussianBottleneck):
    """Gaussian posterior and N(0, I) prior; losses ``mi``, ``tc``, ``dim_kl`` (already weighted).

    ``stats`` keeps the analytic KL (per dimension too) for comparison with the plain VAE.
    """

    config: TCVAEConfig

    def __init__(self, config: TCVAEConfig | None = None) -> None:
        super().__init__(config or TCVAEConfig())

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        mu, logvar = self.posterior(h)  # (B, D) each
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        log_qzx, log_qz, log_qz_prod = mws_log_densities(z, mu, logvar, self.config.dataset_size)
        log_pz = self.prior_log_prob(z)  # (B,)
        mi = (log_qzx - log_qz).mean()
        tc = (log_qz - log_qz_prod).mean()
        dim_kl = (log_qz_prod - log_pz).mean()
        w, cfg = self.kl_weight(), self.config
        kl_dim_mean = self.kl_per_dim(mu, logvar).mean(0).detach()  # (D,)
        return BottleneckOutput(
            latent=z,
            codes=mu,
            losses={
                "mi": w * cfg.mi_weight * mi,
                "tc": w * cfg.tc_weight * tc,
                "dim_kl": w * cfg.dim_kl_weight * dim_kl,
            },
            stats={
                "kl": kl_dim_mean.sum(),
                "kl_per_dim": kl_dim_mean,
                "mi": mi.detach(),
                "tc": tc.detach(),
                "dim_kl": dim_kl.detach(),
                "kl_weight": w,
                "active_units": (kl_dim_mean > 0.01).sum().float(),
            },
        )
