"""Autoregressive priors over small discrete images with exact raster-order likelihood, behind one API
(``log_prob``, ``bits_per_dim``, ``sample``, ``compute_loss``):

* :class:`AxialPrior` — the Axial Transformer (Ho et al. 2019, arXiv 1912.12180). An *outer* stack
  reads the image shifted down one row (unmasked row attention, causal column attention), so its
  context at row ``i`` depends only on rows ``< i``; an *inner* stack reads the row shifted right one
  pixel plus that context, with causal row attention, so pixel ``(i, j)`` sees rows ``< i`` and
  pixels ``(i, < j)``: exactly the raster order.
* :class:`FullCausalPrior` — the baseline: one causal transformer over the flattened raster sequence.

Values are integers in ``[0, n_values)`` (pixels, or tokens of a discrete latent grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.axial import AxialBlock
from isthmus.nn.vit import Block, SelfAttention, sincos_positions

__all__ = ["PriorConfig", "AxialPrior", "FullCausalPrior"]


@dataclass
class PriorConfig(Config):
    n_values: int = 16
    height: int = 8
    width: int = 8
    dim: int = 64
    heads: int = 4
    outer_depth: int = 2  # AxialPrior: pairs of (row, causal column) blocks; FullCausalPrior: depth = outer + inner
    inner_depth: int = 2

    def validate(self) -> None:
        if self.n_values < 2 or self.height < 1 or self.width < 1:
            raise ConfigError("PriorConfig needs n_values >= 2 and a positive height and width")
        if self.dim % self.heads or self.dim % 2:
            raise ConfigError(f"PriorConfig.dim {self.dim} must be even and divisible by heads {self.heads}")


class _Prior(Pretrained, nn.Module):
    config_class = PriorConfig

    def __init__(self, config: PriorConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or PriorConfig()
        self.config = cfg.with_overrides(overrides) if overrides else cfg
        self.embed = nn.Embedding(self.config.n_values, self.config.dim)
        self.head = nn.Linear(self.config.dim, self.config.n_values)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != 3 or tuple(x.shape[1:]) != (c.height, c.width):
            raise ValueError(f"expected (B, {c.height}, {c.width}) integer grids, got {tuple(x.shape)}")
        if x.dtype not in (torch.int64, torch.int32, torch.uint8) or x.min() < 0 or x.max() >= c.n_values:
            raise ValueError(f"values must be integers in [0, {c.n_values}), got dtype {x.dtype}")

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood of each grid ``(B,)`` in nats."""
        self._check(x)
        lp = F.log_softmax(self.logits(x.long()), -1)  # (B, H, W, V)
        return lp.gather(-1, x.long()[..., None]).squeeze(-1).sum((1, 2))

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x).mean() / (self.config.height * self.config.width * math.log(2))

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        nll = -self.log_prob(x).mean() / (self.config.height * self.config.width)
        return ModelOutput(loss=nll, losses={"nll_per_dim": nll})

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` grids drawn pixel by pixel in raster order (seeded by ``generator``)."""
        c = self.config
        x = torch.zeros(n, c.height, c.width, dtype=torch.long)
        for i in range(c.height):
            for j in range(c.width):
                p = F.softmax(self.logits(x)[:, i, j], -1)
                x[:, i, j] = torch.multinomial(p, 1, generator=generator).squeeze(1)
        return x


class AxialPrior(_Prior):
    def __init__(self, config: PriorConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.row_pos = nn.Parameter(torch.zeros(1, c.height, 1, c.dim))
        self.col_pos = nn.Parameter(torch.zeros(1, 1, c.width, c.dim))
        outer: list[nn.Module] = []
        for _ in range(c.outer_depth):
            outer += [AxialBlock(c.dim, c.heads, "row"), AxialBlock(c.dim, c.heads, "column", causal=True)]
        self.outer = nn.Sequential(*outer)
        self.inner = nn.Sequential(*[AxialBlock(c.dim, c.heads, "row", causal=True) for _ in range(c.inner_depth)])
        self.norm = nn.LayerNorm(c.dim)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.row_pos + self.col_pos  # (B, H, W, D)
        above = F.pad(h, (0, 0, 0, 0, 1, 0))[:, :-1]  # shift down one row: row i holds row i - 1
        context = self.outer(above)  # depends on rows < i only
        left = F.pad(h, (0, 0, 1, 0))[:, :, :-1]  # shift right one pixel within the row
        return self.head(self.norm(self.inner(left + context)))


class FullCausalPrior(_Prior):
    pos: torch.Tensor  # a buffer

    def __init__(self, config: PriorConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        n = c.height * c.width
        self.register_buffer("pos", sincos_positions(n, c.dim)[None], persistent=False)
        self.start = nn.Parameter(torch.zeros(1, 1, c.dim))
        causal = lambda d, h: SelfAttention(d, h, causal=True)  # noqa: E731
        self.blocks = nn.Sequential(
            *[Block(c.dim, c.heads, attention=causal) for _ in range(c.outer_depth + c.inner_depth)]
        )
        self.norm = nn.LayerNorm(c.dim)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        b, hgt, wid = x.shape
        seq = self.embed(x).reshape(b, hgt * wid, -1)
        seq = torch.cat([self.start.expand(b, 1, -1), seq[:, :-1]], 1) + self.pos  # predict t from < t
        return self.head(self.norm(self.blocks(seq))).reshape(b, hgt, wid, -1)
