"""Context autoencoder (CAE, Chen et al. 2022, arXiv 2202.03026): predict the *representations* of masked
patches in the encoder's own space, then decode pixels from those predictions only.

Per batch (``forward``): a block mask hides ``mask_ratio`` of the patches. The encoder sees only the
visible patches → ``Z_v``. The latent regressor (cross-attention blocks; queries = a mask token plus
the masked positions, keys/values = ``[Z_v; queries]``, ``Z_v`` never updated) predicts ``Ẑ_m``.
A target encoder — an exact copy of the encoder's weights at every step, run without gradient —
encodes the masked patches → ``Z_m``; ``L_align = ‖Ẑ_m − Z_m‖²``. The decoder sees only ``Ẑ_m`` (with
positions) and predicts the masked patches' (normalised) pixels; ``L = L_rec + λ · L_align``.
``align_weight = 0`` is the paper's ablation. ``encode(x)`` mean-pools the encoder over all patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.vit import Block, CrossBlock, PatchEmbed, block_masking, patchify, sincos_positions

__all__ = ["CAEConfig", "ContextAutoEncoder"]


@dataclass
class CAEConfig(Config):
    image_size: int = 28
    channels: int = 1
    patch: int = 7
    dim: int = 64
    heads: int = 4
    depth: int = 4
    regressor_depth: int = 2
    decoder_depth: int = 2
    mask_ratio: float = 0.5
    align_weight: float = 2.0
    norm_pix_loss: bool = True

    def validate(self) -> None:
        if self.image_size % self.patch:
            raise ConfigError(f"CAEConfig.image_size {self.image_size} must be divisible by patch {self.patch}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"CAEConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.dim % self.heads or self.dim % 2:
            raise ConfigError(f"CAEConfig.dim must be even and divisible by heads={self.heads}")
        if self.align_weight < 0:
            raise ConfigError(f"CAEConfig.align_weight must be >= 0, got {self.align_weight}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch


class ContextAutoEncoder(Pretrained, nn.Module):
    pos: torch.Tensor  # a buffer

    config_class = CAEConfig

    def __init__(self, config: CAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or CAEConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        n, pdim = c.grid**2, c.patch * c.patch * c.channels
        self.embed = PatchEmbed(pdim, c.dim)
        self.register_buffer("pos", sincos_positions(n, c.dim)[None], persistent=False)
        self.encoder = nn.ModuleList([Block(c.dim, c.heads) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.regressor = nn.ModuleList([CrossBlock(c.dim, c.heads) for _ in range(c.regressor_depth)])
        self.reg_norm = nn.LayerNorm(c.dim)
        self.decoder = nn.ModuleList([Block(c.dim, c.heads) for _ in range(c.decoder_depth)])
        self.head = nn.Linear(c.dim, pdim)

    @property
    def latent_dim(self) -> int:
        return self.config.dim

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        for blk in self.encoder:
            tokens = blk(tokens)
        return self.norm(tokens)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features of every patch, no masking ``(B, N, dim)`` (what an attentive probe reads)."""
        return self._encode_tokens(self.embed(patchify(x, self.config.patch)) + self.pos)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder features over all patches ``(B, dim)``."""
        return self.encode_tokens(x).mean(1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> ModelOutput:
        c = self.config
        b = x.shape[0]
        patches = patchify(x, c.patch)  # (B, N, P)
        tokens = self.embed(patches) + self.pos
        mask = block_masking(c.grid, c.mask_ratio, b, generator).to(x.device).bool()  # (B, N), same count per row
        n_m = int(mask[0].sum())
        vis_idx = (~mask).nonzero()[:, 1].reshape(b, -1)
        msk_idx = mask.nonzero()[:, 1].reshape(b, n_m)
        take = lambda t, idx: torch.gather(t, 1, idx[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
        z_v = self._encode_tokens(take(tokens, vis_idx))  # (B, Nv, D): visible patches only
        queries = self.mask_token + take(self.pos.expand(b, -1, -1), msk_idx)  # (B, Nm, D)
        for blk in self.regressor:
            queries = blk(queries, z_v)
        z_hat = self.reg_norm(queries)
        losses: dict[str, torch.Tensor] = {}
        if c.align_weight > 0:
            with torch.no_grad():  # the target encoder: this step's weights, no gradient (momentum 0)
                z_m = self._encode_tokens(take(tokens, msk_idx)).detach()
            losses["align"] = c.align_weight * (z_hat - z_m).pow(2).mean()
        dec = z_hat + take(self.pos.expand(b, -1, -1), msk_idx)
        for blk in self.decoder:
            dec = blk(dec)
        pred = self.head(dec)  # (B, Nm, P)
        target = take(patches, msk_idx)
        if c.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        losses["reconstruction"] = (pred - target).pow(2).mean()
        total = cast(torch.Tensor, sum(losses.values()))  # never empty: "reconstruction" is always a term
        return ModelOutput(loss=total, losses=losses, latent=z_v.mean(1), stats={"mask": mask})

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)
