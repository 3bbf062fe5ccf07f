"""ARD prior: a Gaussian posterior with a per-axis prior variance learned from held-out data.

Saha, Joshi & Whitaker, "ARD-VAE: A Statistical Formulation to Find the Relevant Latent Dimensions
of VAEs" (arXiv 2501.10901). Hierarchical prior z_l ~ N(0, 1/α_l), α_l ~ Gamma(a₀, b₀). Given
samples z̃ = μ + σ·ε of a held-out subset of N inputs, the Gamma posterior on α_l has
a = a₀ + N/2 and b_l = b₀ + Σ_i z̃_il² / 2, so the prior variance is τ_l² = 1/E[α_l] = b_l / a
(with a₀ = b₀ = 0: the mean of z̃_l²). The KL of the ELBO uses τ² as a constant (no gradient).

After training, axis l is scored by τ_l² · ‖E_x |∂ decoder(μ) / ∂ μ_l|‖² (decoder Jacobian at the
posterior means); the relevant axes are the smallest set holding ``relevance_threshold`` (99 %) of
the total score. Re-estimate τ² each epoch with :class:`isthmus.train.callbacks.ARDUpdate`, or call
:meth:`ARDBottleneck.update_prior` yourself with encoder outputs of held-out data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from isthmus.bottlenecks.base import BOTTLENECKS
from isthmus.bottlenecks.gaussian import GaussianBottleneck, GaussianConfig
from isthmus.config import ConfigError

__all__ = ["ARDConfig", "ARDBottleneck", "decoder_jacobian_energy"]


@dataclass
class ARDConfig(GaussianConfig):
    """``a0``/``b0``: Gamma hyper-prior on each axis' precision (0, 0 = non-informative, the paper's).

    ``min_prior_var`` floors τ² so a collapsed axis cannot make the KL blow up.
    ``relevance_threshold``: share of the total relevance the reported axes must hold.
    """

    a0: float = 0.0
    b0: float = 0.0
    min_prior_var: float = 1e-4
    relevance_threshold: float = 0.99

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.a0 < 0 or self.b0 < 0:
            raise ConfigError(f"{name}.a0 and {name}.b0 must be >= 0, got {self.a0}, {self.b0}")
        if not self.min_prior_var > 0:
            raise ConfigError(f"{name}.min_prior_var must be > 0, got {self.min_prior_var}")
        if not 0.0 < self.relevance_threshold <= 1.0:
            raise ConfigError(f"{name}.relevance_threshold must be in (0, 1], got {self.relevance_threshold}")


def decoder_jacobian_energy(decoder: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor) -> torch.Tensor:
    """‖E_x |∂ decoder(μ) / ∂ μ_l|‖² per latent axis l, ``(D,)``, from posterior means ``mu`` (N, D)."""
    mu = mu.detach()
    # jacrev per sample, vmapped over the batch: (N, *out, D)
    jac = torch.func.vmap(torch.func.jacrev(lambda m: decoder(m.unsqueeze(0)).squeeze(0)))(mu)
    jac = jac.reshape(mu.shape[0], -1, mu.shape[1])  # (N, F, D)
    return jac.abs().mean(0).pow(2).sum(0)  # (D,)


@BOTTLENECKS.register("ard", ARDConfig)
class ARDBottleneck(GaussianBottleneck):
    """Gaussian posterior, prior N(0, diag τ²) with τ² in the ``prior_var`` buffer (saved with the model)."""

    config: ARDConfig
    prior_var: torch.Tensor  # buffers
    prior_updates: torch.Tensor

    def __init__(self, config: ARDConfig | None = None) -> None:
        super().__init__(config or ARDConfig())
        self.register_buffer("prior_var", torch.ones(self.config.latent_dim))  # τ², starts at N(0, I)
        self.register_buffer("prior_updates", torch.zeros((), dtype=torch.long))

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(μ, σ²) || N(0, τ²)) per sample and axis, ``(B, D)``; τ² is a constant."""
        var_p = self.prior_var  # (D,)
        return 0.5 * (var_p.log() - logvar + (logvar.exp() + mu.pow(2)) / var_p - 1.0)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        var_p = self.prior_var
        return (-0.5 * z.pow(2) / var_p - 0.5 * (var_p.log() + math.log(2 * math.pi))).sum(-1)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(n, self.config.latent_dim, generator=generator)
        return eps.to(self.prior_var.device) * self.prior_var.sqrt()

    @torch.no_grad()
    def update_prior(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Re-estimate τ² from encoder outputs ``h`` (N, 2D) of a held-out subset; returns τ² (D,)."""
        self.check_input(h)
        mu, logvar = self.posterior(h)  # (N, D) each
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        z = mu + eps * torch.exp(0.5 * logvar)  # z̃, one sample per input as in the paper
        a = self.config.a0 + 0.5 * z.shape[0]
        b = self.config.b0 + 0.5 * z.pow(2).sum(0)  # (D,)
        self.prior_var.copy_((b / a).clamp(min=self.config.min_prior_var))
        self.prior_updates += 1
        return self.prior_var.clone()

    @torch.no_grad()
    def relevance(
        self, decoder: Callable[[torch.Tensor], torch.Tensor] | None = None, mu: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised relevance per axis, ``(D,)`` summing to 1.

        With ``decoder`` and posterior means ``mu`` (N, D) this is the paper's τ_l² · Jacobian energy.
        Without them only τ² is used, which cannot tell an unused axis whose posterior sits on its
        prior from a used one; pass the decoder for a count you can trust.
        """
        score = self.prior_var.clone()
        if decoder is not None:
            if mu is None:
                raise ValueError("relevance(decoder=...) needs the posterior means mu (N, D) of some inputs")
            with torch.enable_grad():
                score = score * decoder_jacobian_energy(decoder, mu).to(score)
        total = score.sum()
        return score / total if total > 0 else torch.full_like(score, 1.0 / score.numel())

    def relevant_dims(
        self, threshold: float | None = None, decoder: Callable | None = None, mu: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Indices (ascending) of the fewest axes whose relevance sums to ``threshold`` (default config's)."""
        threshold = self.config.relevance_threshold if threshold is None else threshold
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        rel = self.relevance(decoder, mu)
        order = torch.argsort(rel, descending=True)
        cum = torch.cumsum(rel[order], 0)
        # first position reaching the threshold; the tolerance absorbs float rounding at 1.0
        n = int((cum < threshold - 1e-6).sum().item()) + 1
        return torch.sort(order[: min(n, rel.numel())]).values
