"""Multi-layer perceptron with configurable depth, width, activation, norm, dropout and init."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.nn.layers import ACTIVATION_NAMES, INIT_NAMES, activation, init_weights

NORMS = ("none", "batch", "layer")


@dataclass
class MLPConfig(Config):
    """An MLP ``in_dim → hidden[0] → … → hidden[-1] → out_dim``.

    ``out_activation`` is applied after the last layer (``identity`` for codes, ``sigmoid`` for
    pixels in [0, 1]). Norm and dropout sit after each hidden activation.
    """

    in_dim: int = 64
    out_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    activation: str = "relu"
    out_activation: str = "identity"
    norm: str = "none"
    dropout: float = 0.0
    init: str = "default"
    init_std: float = 0.1

    def validate(self) -> None:
        if self.in_dim < 1 or self.out_dim < 1:
            raise ConfigError(f"MLPConfig: in_dim and out_dim must be >= 1, got {self.in_dim}, {self.out_dim}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"MLPConfig.hidden: every width must be >= 1, got {self.hidden}")
        for name in ("activation", "out_activation"):
            if getattr(self, name) not in ACTIVATION_NAMES:
                raise ConfigError(f"MLPConfig.{name}: {getattr(self, name)!r} not in {list(ACTIVATION_NAMES)}")
        if self.norm not in NORMS:
            raise ConfigError(f"MLPConfig.norm: {self.norm!r} not in {list(NORMS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"MLPConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.init not in INIT_NAMES:
            raise ConfigError(f"MLPConfig.init: {self.init!r} not in {list(INIT_NAMES)}")


class MLP(nn.Module):
    """Feed-forward stack built from an :class:`MLPConfig`. Input ``(B, in_dim)`` → ``(B, out_dim)``.

    Inputs with extra trailing dims (e.g. images ``(B, C, H, W)``) are flattened first, so an MLP
    encoder can sit directly on image batches.
    """

    def __init__(self, config: MLPConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or MLPConfig()
        if overrides:
            config = config.with_overrides(overrides)
        self.config = config
        widths = [config.in_dim, *config.hidden, config.out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            last = i == len(widths) - 2
            if last:
                layers.append(activation(config.out_activation))
                continue
            layers.append(activation(config.activation))
            if config.norm == "batch":
                layers.append(nn.BatchNorm1d(b))
            elif config.norm == "layer":
                layers.append(nn.LayerNorm(b))
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
        self.net = nn.Sequential(*layers)
        init_weights(self, config.init, config.init_std)

    @property
    def in_dim(self) -> int:
        return self.config.in_dim

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)  # (B, C, H, W) -> (B, C*H*W)
        if x.shape[-1] != self.config.in_dim:
            raise ValueError(
                f"MLP expects inputs with {self.config.in_dim} features, got shape {tuple(x.shape)}; "
                "set in_dim to the number of features of your data"
            )
        return self.net(x)
