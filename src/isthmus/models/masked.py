"""Masked autoencoder for images (He et al. 2021, arXiv 2111.06377): encode visible patches only,
decode with mask tokens, reconstruct the masked patches.

The encoder sees only the ``(1 − mask_ratio)`` kept patches (that is what makes MAE cheap); the
decoder receives the encoded visible tokens plus one shared learned mask token per masked position,
in the original order with position embeddings added, and predicts every patch's pixels. The loss is
the MSE on masked patches only (optionally on per-patch normalised pixels, MAE's ``norm_pix_loss``).
``encode(x)`` runs the encoder on all patches without masking and mean-pools: the representation
linear/k-NN probes read. The block type is pluggable (``block``), so other transformer blocks drop in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.crate import CRATEDecoderBlock, CRATEEncoderBlock
from isthmus.nn.vit import Block, PatchEmbed, patchify, random_masking, sincos_positions, unpatchify

__all__ = ["MAEConfig", "MaskedAutoEncoder"]


@dataclass
class MAEConfig(Config):
    image_size: int = 28
    channels: int = 1
    patch: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 4
    decoder_dim: int = 64
    decoder_depth: int = 2
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    block: Literal["vit", "crate"] = "vit"  # "crate": white-box MSSA + ISTA blocks (nn.crate)

    def validate(self) -> None:
        if self.image_size % self.patch:
            raise ConfigError(f"MAEConfig.image_size {self.image_size} must be divisible by patch {self.patch}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"MAEConfig.mask_ratio must be in [0, 1), got {self.mask_ratio}")
        for name in ("dim", "decoder_dim"):
            if getattr(self, name) % self.heads or getattr(self, name) % 2:
                raise ConfigError(f"MAEConfig.{name} must be even and divisible by heads={self.heads}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch) ** 2

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch * self.channels


class MaskedAutoEncoder(Pretrained, nn.Module):
    pos: torch.Tensor  # buffers
    dec_pos: torch.Tensor

    config_class = MAEConfig

    def __init__(self, config: MAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or MAEConfig()
        if overrides:
            cfg = cfg.with_overrides(overrides)
        self.config = cfg
        self.embed = PatchEmbed(cfg.patch_dim, cfg.dim)
        self.register_buffer("pos", sincos_positions(cfg.n_patches, cfg.dim)[None], persistent=False)
        self.register_buffer("dec_pos", sincos_positions(cfg.n_patches, cfg.decoder_dim)[None], persistent=False)
        if cfg.block == "crate":
            self.encoder = nn.ModuleList([CRATEEncoderBlock(cfg.dim, cfg.heads) for _ in range(cfg.depth)])
        else:
            self.encoder = nn.ModuleList([Block(cfg.dim, cfg.heads) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.to_decoder = nn.Linear(cfg.dim, cfg.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        dec_block = CRATEDecoderBlock if cfg.block == "crate" else Block
        self.decoder = nn.ModuleList([dec_block(cfg.decoder_dim, cfg.heads) for _ in range(cfg.decoder_depth)])
        self.dec_norm = nn.LayerNorm(cfg.decoder_dim)
        self.head = nn.Linear(cfg.decoder_dim, cfg.patch_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.dim

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.channels, c.image_size, c.image_size):
            raise ValueError(
                f"MaskedAutoEncoder expects (B, {c.channels}, {c.image_size}, {c.image_size}) images, "
                f"got {tuple(x.shape)}"
            )

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        for blk in self.encoder:
            tokens = blk(tokens)
        return self.norm(tokens)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features of every patch, no masking ``(B, N, dim)`` (what an attentive probe reads)."""
        self._check(x)
        return self._encode_tokens(self.embed(patchify(x, self.config.patch)) + self.pos)

    def encode_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Tokens after each encoder block (all patches, no masking): for per-layer diagnostics."""
        self._check(x)
        tokens, out = self.embed(patchify(x, self.config.patch)) + self.pos, []
        for blk in self.encoder:
            tokens = blk(tokens)
            out.append(tokens)
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder features of all patches, no masking ``(B, dim)``."""
        return self.encode_tokens(x).mean(1)

    def forward(
        self, x: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> ModelOutput:
        self._check(x)
        c = self.config
        ratio = c.mask_ratio if mask_ratio is None else mask_ratio
        target = patchify(x, c.patch)  # (B, N, P)
        tokens = self.embed(target) + self.pos
        kept, mask, keep_idx, restore = random_masking(tokens, ratio, generator)
        latent = self._encode_tokens(kept)  # (B, K, D): the encoder never sees a mask token
        dec = self.to_decoder(latent)
        b, n = mask.shape
        fill = self.mask_token.expand(b, n - dec.shape[1], -1)
        full = torch.gather(torch.cat([dec, fill], 1), 1, restore[..., None].expand(-1, -1, dec.shape[-1]))
        full = full + self.dec_pos
        for blk in self.decoder:
            full = blk(full)
        pred = self.head(self.dec_norm(full))  # (B, N, P)
        if c.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = (pred - target).pow(2).mean(-1)  # (B, N)
        denom = mask.sum().clamp_min(1.0)
        loss = (per_patch * mask).sum() / denom
        recon = unpatchify(pred, c.patch, c.channels, c.image_size, c.image_size)
        return ModelOutput(
            loss=loss,
            losses={"masked_mse": loss},
            recon=recon,
            latent=latent.mean(1),
            stats={"mask": mask, "keep_idx": keep_idx},
        )

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)
