"""Discrete key-value bottleneck (DKVB).

Träuble, Goyal, Rahaman, Mozer, Kawaguchi, Bengio, Schölkopf, "Discrete Key-Value Bottleneck"
(arXiv 2207.11240). The (typically frozen, pretrained) encoder output ``h`` is split by C **fixed random
projections** into C heads; each head snaps to its nearest **key** in its own codebook of K keys and
fetches that key's learnable **value**. Keys are initialised by k-means on unlabelled data and then
frozen; only the fetched values receive gradient, so training on new data changes only the values its
keys select — the paper's mechanism against catastrophic forgetting. Decoding is non-parametric: the
mean of the C fetched values (the paper's choice, with value width = number of classes) or their
concatenation.

No gradient reaches the keys, the projections or the encoder (nearest-key selection is not
differentiable, and there is deliberately no straight-through path). Keys and projections are buffers,
never parameters, so no optimizer can move them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.bottlenecks.codebook_stats import codebook_stats, kmeans
from isthmus.config import ConfigError

__all__ = ["KeyValueConfig", "KeyValueBottleneck"]


@dataclass
class KeyValueConfig(BottleneckConfig):
    """``latent_dim`` is the width of the decoded output; ``input_dim`` the encoder's (0 = latent_dim).

    ``init_on_first_batch``: when ``init_keys`` was never called, run it on the first training batch
    (convenient; the paper initialises on separate unlabelled data before training).
    """

    input_dim: int = 0
    heads: int = 8
    key_dim: int = 8
    num_keys: int = 32
    decoding: Literal["mean", "concat"] = "mean"
    kmeans_iters: int = 10
    init_on_first_batch: bool = True

    def validate(self) -> None:
        super().validate()
        for name in ("heads", "key_dim", "num_keys", "kmeans_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"KeyValueConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.input_dim < 0:
            raise ConfigError(f"KeyValueConfig.input_dim must be >= 0 (0 = latent_dim), got {self.input_dim}")
        if self.decoding == "concat" and self.latent_dim % self.heads:
            raise ConfigError(
                f"KeyValueConfig.decoding='concat' needs latent_dim ({self.latent_dim}) "
                f"divisible by heads ({self.heads})"
            )

    @property
    def value_dim(self) -> int:
        return self.latent_dim if self.decoding == "mean" else self.latent_dim // self.heads


@BOTTLENECKS.register("key_value", KeyValueConfig)
class KeyValueBottleneck(Bottleneck):
    """DKVB. ``codes``: the selected key per head (B, C); latent: decoded values (B, latent_dim)."""

    config: KeyValueConfig
    projection: torch.Tensor  # buffers
    keys: torch.Tensor
    keys_initialized: torch.Tensor

    def __init__(self, config: KeyValueConfig | None = None) -> None:
        super().__init__(config or KeyValueConfig())
        cfg = self.config
        d_in = self.in_features
        self.register_buffer("projection", torch.randn(cfg.heads, d_in, cfg.key_dim) / d_in**0.5)  # (C, in, dk)
        self.register_buffer("keys", torch.randn(cfg.heads, cfg.num_keys, cfg.key_dim))  # (C, K, dk)
        self.register_buffer("keys_initialized", torch.tensor(False))
        self.values = nn.Parameter(torch.randn(cfg.heads, cfg.num_keys, cfg.value_dim))  # (C, K, dv)

    @property
    def in_features(self) -> int:
        return self.config.input_dim or self.config.latent_dim

    @torch.no_grad()
    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Fixed random projection of ``h`` (B, in) into the heads: (B, C, dk)."""
        return torch.einsum("bi,cik->bck", h, self.projection)

    @torch.no_grad()
    def init_keys(self, x: torch.Tensor, iters: int | None = None) -> "KeyValueBottleneck":
        """k-means per head on unlabelled encoder outputs ``x`` (N, in); the keys stay fixed afterwards."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"init_keys expects (N, {self.in_features}), got {tuple(x.shape)}")
        p = self.project(x)  # (N, C, dk)
        for c in range(self.config.heads):
            self.keys[c] = kmeans(p[:, c], self.config.num_keys, iters or self.config.kmeans_iters)[0]
        self.keys_initialized.fill_(True)
        return self

    @torch.no_grad()
    def lookup(self, h: torch.Tensor) -> torch.Tensor:
        """Index of the nearest key per head, (B, C)."""
        p = self.project(h).transpose(0, 1)  # (C, B, dk)
        return torch.cdist(p, self.keys).argmin(-1).t()  # (B, C)

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        cfg = self.config
        if self.training and cfg.init_on_first_batch and not bool(self.keys_initialized):
            self.init_keys(h.detach())
        idx = self.lookup(h.detach())  # (B, C)
        heads = torch.arange(cfg.heads, device=h.device)
        fetched = self.values[heads[None, :], idx]  # (B, C, dv); gradient only to the fetched values
        latent = fetched.mean(1) if cfg.decoding == "mean" else fetched.reshape(h.shape[0], -1)  # (B, latent_dim)
        stats: dict[str, torch.Tensor | float] = dict(codebook_stats(idx, cfg.num_keys, separate_codebooks=True))
        return BottleneckOutput(latent=latent, codes=idx, losses={}, stats=stats)
