"""1D Matryoshka nesting: every prefix ``z[:, :k]`` of a latent is itself a usable embedding.

Kusupati et al., "Matryoshka Representation Learning" (arXiv 2205.13147); the fixed-list training of
Starbucks (Zhuang et al., arXiv 2410.13230) for the 1D case: the loss sums a task loss on each prefix
of a fixed list ``prefix_dims`` instead of sampling one size per step.

Nesting is an *objective* over the latent of any bottleneck, not a new latent family, so this file
holds the config and the masking primitive; :class:`isthmus.models.MatryoshkaAutoEncoder` decodes
every prefix with the shared decoder and sums the weighted reconstruction losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from isthmus.config import Config, ConfigError

__all__ = ["MatryoshkaConfig", "prefix_mask", "nested_latents"]


@dataclass
class MatryoshkaConfig(Config):
    """``prefix_dims``: strictly increasing prefix sizes (the full latent is always added last).
    ``prefix_weights``: one weight per prefix *including* the full latent, or empty for all ones.
    """

    prefix_dims: list[int] = field(default_factory=lambda: [2, 4, 8])
    prefix_weights: list[float] = field(default_factory=list)

    def validate(self) -> None:
        name = type(self).__name__
        dims = self.prefix_dims
        if not dims or any(k < 1 for k in dims) or any(b <= a for a, b in zip(dims, dims[1:])):
            raise ConfigError(
                f"{name}.prefix_dims must be a non-empty, strictly increasing list of sizes >= 1, got {dims}"
            )
        if any(w < 0 for w in self.prefix_weights):
            raise ConfigError(f"{name}.prefix_weights must be >= 0, got {self.prefix_weights}")

    def sizes(self, latent_dim: int) -> list[int]:
        """The prefix sizes used for a latent of ``latent_dim`` (full size appended when missing)."""
        if self.prefix_dims[-1] > latent_dim:
            raise ConfigError(f"MatryoshkaConfig.prefix_dims {self.prefix_dims} exceed the latent size {latent_dim}")
        sizes = list(self.prefix_dims)
        if sizes[-1] != latent_dim:
            sizes.append(latent_dim)
        if self.prefix_weights and len(self.prefix_weights) != len(sizes):
            raise ConfigError(
                f"MatryoshkaConfig.prefix_weights has {len(self.prefix_weights)} entries but there are "
                f"{len(sizes)} prefixes {sizes} (the full latent counts); give one weight per prefix"
            )
        return sizes

    def weights(self, latent_dim: int) -> list[float]:
        return list(self.prefix_weights) or [1.0] * len(self.sizes(latent_dim))


def prefix_mask(z: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the first ``k`` latent dimensions, zero the rest: ``(B, D)`` → ``(B, D)``.

    Zero is the prior mean of the Gaussian families, so a masked latent stays in-distribution
    for the decoder; the decoder's input width never changes, so one decoder serves every prefix.
    """
    if not 1 <= k <= z.shape[1]:
        raise ValueError(f"prefix size {k} must be in [1, {z.shape[1]}]")
    if k == z.shape[1]:
        return z
    mask = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
    mask[:k] = 1.0
    return z * mask  # (B, D)


def nested_latents(z: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """The masked latent of every prefix size, each ``(B, D)``."""
    return [prefix_mask(z, k) for k in sizes]
