"""The bottleneck contract shared by every family.

A bottleneck maps the encoder's output ``h`` of shape ``(B, in_features)`` to a latent
``(B, latent_dim)`` that the decoder reads, and reports:

* ``codes``  — discrete indices or sparse activations where the family has them (else ``None``),
* ``losses`` — named loss terms *already weighted* (β·KL, commitment, L1 ...); the model sums them,
* ``stats``  — detached diagnostics for logging (raw KL, active units, perplexity ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.registry import Registry

__all__ = ["BottleneckOutput", "Bottleneck", "BottleneckConfig", "BOTTLENECKS", "build_bottleneck"]


@dataclass
class BottleneckOutput:
    latent: torch.Tensor  # (B, latent_dim), what the decoder reads
    codes: torch.Tensor | None = None  # discrete indices / sparse codes, family-specific
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # weighted terms, summed by the model
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)  # detached diagnostics


@dataclass
class BottleneckConfig(Config):
    latent_dim: int = 8

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"{type(self).__name__}.latent_dim must be >= 1, got {self.latent_dim}")


class Bottleneck(nn.Module):
    """Base class. Subclasses set ``self.config`` and implement :meth:`forward`.

    ``step`` is a persistent buffer (saved with the weights) so schedules such as KL warm-up
    resume exactly; the trainer advances it through :meth:`set_step`.
    """

    config: BottleneckConfig
    step: torch.Tensor  # buffer

    def __init__(self, config: BottleneckConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def in_features(self) -> int:
        """Width the encoder must output. Defaults to ``latent_dim``."""
        return self.config.latent_dim

    def set_step(self, step: int) -> None:
        self.step.fill_(step)

    def check_input(self, h: torch.Tensor) -> None:
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, {self.in_features}), got {tuple(h.shape)}; "
                f"the encoder's out_dim must equal the bottleneck's in_features ({self.in_features})"
            )

    def forward(self, h: torch.Tensor) -> BottleneckOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` latents from the prior, for families that have one."""
        raise NotImplementedError(f"{type(self).__name__} has no prior to sample from")


BOTTLENECKS: Registry[Bottleneck] = Registry("bottleneck")


def build_bottleneck(spec: str | dict | Bottleneck, **kwargs) -> Bottleneck:
    """Build from a name (``"gaussian"``), a spec ``{"type": name, "config": {...}}``, or pass through."""
    if isinstance(spec, Bottleneck):
        return spec
    if isinstance(spec, str):
        return BOTTLENECKS.build(spec, **kwargs)
    if isinstance(spec, dict):
        if "type" not in spec:
            raise ConfigError(f"bottleneck spec needs a 'type' key, got {sorted(spec)}")
        return BOTTLENECKS.build(spec["type"], spec.get("config", {}), **kwargs)
    raise TypeError(f"cannot build a bottleneck from {type(spec).__name__}")
