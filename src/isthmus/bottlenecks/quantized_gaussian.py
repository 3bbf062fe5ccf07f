"""Uniform latent quantization of a VAE: the adversarial filter of Kyatham et al.

Kyatham, Mishra, Yadav, Mishra, Prathosh, "Variational Inference with Latent Space Quantization for
Adversarial Resilience" (arXiv 1903.09940). A Gaussian posterior q(z|x) = N(μ, σ²) with the usual KL to
N(0, I); the latent the decoder sees is snapped to a uniform grid of step Δ (``step``):
``z_q = Δ · round(z / Δ)``, with a straight-through gradient ``z + sg(z_q - z)``. In training z is the
reparameterised sample, so the decoder learns to map a neighbourhood of each code back onto the data; in
eval mode z = μ, so ``decode(quantize(encode(x)))`` is a deterministic purifier: an input perturbation
that moves μ by less than Δ/2 per dimension leaves the output unchanged.

The paper also bounds the encoder's Lipschitz constant with a Jacobian penalty. That term needs the input,
which a bottleneck never sees, so it lives in the objective: ``ObjectiveConfig(jacobian_weight=λ)`` adds
λ‖∂μ/∂x‖²_F (random-projection estimate) for any AutoEncoder.

The straight-through path is always on, also in eval mode: autograd through the purifier then *is* the
BPDA gradient (Athalye et al., arXiv 1802.00420), so an attacker differentiating the model end to end
is not fooled by the zero derivative of ``round``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from isthmus.bottlenecks.base import BOTTLENECKS, BottleneckOutput
from isthmus.bottlenecks.gaussian import GaussianBottleneck, GaussianConfig
from isthmus.config import ConfigError

__all__ = ["QuantizedGaussianConfig", "QuantizedGaussianBottleneck"]


@dataclass
class QuantizedGaussianConfig(GaussianConfig):
    """``step``: grid spacing Δ of every latent dimension (the grid is centred on 0 and unbounded)."""

    step: float = 0.5

    def validate(self) -> None:
        super().validate()
        if not self.step > 0:
            raise ConfigError(f"QuantizedGaussianConfig.step must be > 0, got {self.step}")


@BOTTLENECKS.register("quantized_gaussian", QuantizedGaussianConfig)
class QuantizedGaussianBottleneck(GaussianBottleneck):
    """VAE latent snapped to a uniform grid. ``codes``: integer grid index per dimension (B, D), of μ.

    Loss terms: ``kl`` (as the Gaussian bottleneck). Stats add ``quantization_error`` (mean |z_q - z|)
    and ``distinct_codes`` (number of distinct code vectors in the batch).
    """

    config: QuantizedGaussianConfig

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest grid point, with a straight-through gradient (identity Jacobian)."""
        step = self.config.step
        z_q = torch.round(z / step) * step
        return z + (z_q - z).detach()

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        out = super().forward(h)  # checks input; z = sample (train) or μ (eval); codes = μ
        mu = out.codes
        assert mu is not None  # GaussianBottleneck always returns μ as codes
        latent = self.quantize(out.latent)
        codes = torch.round(mu.detach() / self.config.step).long()  # (B, D)
        stats = dict(out.stats)
        stats["quantization_error"] = (latent - out.latent).detach().abs().mean()
        stats["distinct_codes"] = torch.tensor(float(torch.unique(codes, dim=0).shape[0]))
        return BottleneckOutput(latent=latent, codes=codes, losses=out.losses, stats=stats)
