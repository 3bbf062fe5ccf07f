"""Annealed gradient noise.

Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep Networks"
(arXiv 1511.06807): at training step ``t`` add ``N(0, sigma_t^2)`` to every gradient, with
``sigma_t^2 = eta / (1 + t)^gamma`` (the paper uses eta in {0.01, 0.3, 1.0}, gamma = 0.55).
The Trainer applies it after gradient clipping, just before the optimizer step.

The noise comes from its own ``torch.Generator`` so it neither disturbs nor depends on the
global RNG that dropout and VAE sampling use; its state is saved in checkpoints.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

__all__ = ["annealed_noise_std", "GradientNoise"]


def annealed_noise_std(step: int, eta: float, gamma: float = 0.55) -> float:
    """Standard deviation ``sqrt(eta / (1 + step)^gamma)`` of the noise at global ``step`` (0-based)."""
    if eta < 0 or gamma < 0 or step < 0:
        raise ValueError(f"need eta >= 0, gamma >= 0, step >= 0; got eta={eta}, gamma={gamma}, step={step}")
    return math.sqrt(eta / (1.0 + step) ** gamma)


class GradientNoise:
    """Gradient transform: ``grad += annealed_noise_std(step) * N(0, I)`` for every parameter."""

    def __init__(self, eta: float, gamma: float = 0.55, seed: int = 0, device: torch.device | str = "cpu") -> None:
        if eta < 0 or gamma < 0:
            raise ValueError(f"need eta >= 0 and gamma >= 0, got eta={eta}, gamma={gamma}")
        self.eta = eta
        self.gamma = gamma
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def std(self, step: int) -> float:
        return annealed_noise_std(step, self.eta, self.gamma)

    @torch.no_grad()
    def apply(self, params: Iterable[torch.nn.Parameter], step: int) -> float:
        """Add the step's noise to each ``p.grad`` in place; returns the std used (0 → no-op)."""
        std = self.std(step)
        if std == 0.0:
            return 0.0
        gen = self.generator
        for p in params:
            g = p.grad
            if g is not None:
                g.add_(torch.randn(g.shape, generator=gen, dtype=g.dtype, device=g.device), alpha=std)
        return std
