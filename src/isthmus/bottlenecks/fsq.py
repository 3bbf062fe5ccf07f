"""Finite scalar quantization (FSQ).

Mentzer, Minnen, Agustsson, Tschannen, "Finite Scalar Quantization: VQ-VAE Made Simple"
(arXiv 2309.15505). Each latent dimension i is bounded by a tanh to ``L_i`` possible values, rounded to
the nearest integer with a straight-through gradient, and rescaled to [-1, 1]. The implicit codebook is
the product grid (``prod(levels)`` codes): no codebook parameters, no auxiliary losses, no collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.bottlenecks.codebook_stats import codebook_stats
from isthmus.config import ConfigError

__all__ = ["FSQConfig", "FSQBottleneck"]


@dataclass
class FSQConfig(BottleneckConfig):
    """``levels``: number of values per dimension; one entry is used for every dimension.

    The paper's recommended sets include [8, 5, 5, 5] (1,000 codes) and [8, 8, 8, 5, 5, 5] (64,000).
    """

    levels: list[int] = field(default_factory=lambda: [5])
    eps: float = 1e-3  # keeps tanh's range just wider than the outermost level, so it is reachable

    def validate(self) -> None:
        super().validate()
        if len(self.levels) not in (1, self.latent_dim):
            raise ConfigError(
                f"FSQConfig.levels has {len(self.levels)} entries; give 1 (shared) or latent_dim={self.latent_dim}"
            )
        if any(level < 2 for level in self.levels):
            raise ConfigError(f"FSQConfig.levels must all be >= 2, got {self.levels}")
        if self.eps <= 0:
            raise ConfigError(f"FSQConfig.eps must be > 0, got {self.eps}")

    def per_dim_levels(self) -> list[int]:
        return list(self.levels) * self.latent_dim if len(self.levels) == 1 else list(self.levels)


@BOTTLENECKS.register("fsq", FSQConfig)
class FSQBottleneck(Bottleneck):
    """FSQ bottleneck. ``codes``: one integer per sample (B,) indexing the product grid.

    The latent of dimension i takes values ``k / (L_i // 2)`` for integer k in
    ``[-(L_i // 2), L_i - 1 - L_i // 2]`` (odd L is symmetric, even L has one more negative value).
    """

    config: FSQConfig
    levels: torch.Tensor  # buffers
    basis: torch.Tensor

    def __init__(self, config: FSQConfig | None = None) -> None:
        super().__init__(config or FSQConfig())
        levels = self.config.per_dim_levels()
        basis = [math.prod(levels[:i]) for i in range(len(levels))]
        # Derived from the config, so not saved with the weights (persistent=False).
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)  # (D,)
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.long), persistent=False)  # (D,)
        self.codebook_size = math.prod(levels)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash ``z`` (B, D) so that rounding gives exactly L_i values per dimension."""
        levels = self.levels.to(z.dtype)
        half_l = (levels - 1) * (1 + self.config.eps) / 2
        offset = (self.levels % 2 == 0).to(z.dtype) * 0.5  # even L: shift so the grid has L points
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def half_width(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.levels // 2).to(dtype)  # (D,)

    def grid(self, dim: int) -> torch.Tensor:
        """All values the latent of dimension ``dim`` can take (sorted)."""
        lv, hw = int(self.levels[dim]), int(self.levels[dim]) // 2
        return torch.arange(-hw, lv - hw, dtype=torch.float32) / hw

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Inverse of the code index: (B,) → latent (B, D)."""
        digits = (codes[:, None] // self.basis) % self.levels  # (B, D) in [0, L_i)
        hw = self.half_width()
        return (digits.float() - hw) / hw

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        bounded = self.bound(h)  # (B, D)
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through round
        hw = self.half_width(h.dtype)
        latent = rounded / hw  # (B, D) in [-1, 1]
        codes = ((rounded.detach() + hw).round().long() * self.basis).sum(1)  # (B,)
        stats: dict[str, torch.Tensor | float] = dict(codebook_stats(codes, self.codebook_size))
        stats["bound_error"] = (latent.detach() - bounded.detach() / hw).pow(2).mean()
        return BottleneckOutput(latent=latent, codes=codes, losses={}, stats=stats)
