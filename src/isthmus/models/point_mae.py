"""Point-MAE (Pang et al. 2022, arXiv 2203.06604): masked autoencoding of point-cloud patches.

A cloud ``(B, M, 3)`` is cut into ``groups`` patches: centres by farthest-point sampling, each patch the
``k`` nearest points relative to its centre. A mini-PointNet embeds every patch; a centre MLP gives its
position, added again before every block (as in the authors' code). A random ``mask_ratio`` of the patches
is hidden; the encoder sees only the visible tokens; the decoder gets the encoded visible tokens plus one
shared mask token per hidden patch (with its centre's position) and predicts each hidden patch's ``k``
points; the loss is the Chamfer-L2 between predicted and true hidden patches (squared distances, mean both
ways). :class:`PointEncoder` is the shared backbone (also fine-tuned for classification);
:class:`PointFoldingAE` is the plain point autoencoder (no masking, a FoldingNet-style decoder from one
global code) that asks whether *masking* matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.points import MiniPointNet, chamfer_distance, farthest_point_sample, knn_group
from isthmus.nn.vit import Block, random_masking

__all__ = ["PointMAEConfig", "PointEncoder", "PointMAE", "PointFoldingAE", "group_points"]


@dataclass
class PointMAEConfig(Config):
    n_points: int = 256
    groups: int = 16
    k: int = 16
    dim: int = 64
    heads: int = 4
    depth: int = 4
    decoder_depth: int = 2
    mask_ratio: float = 0.6
    embed_hidden: int = 32  # mini-PointNet width (paper: 128/256; shrunk for CPU)

    def validate(self) -> None:
        if not 1 <= self.groups <= self.n_points or not 1 <= self.k <= self.n_points:
            raise ConfigError(
                f"PointMAEConfig: groups ({self.groups}) and k ({self.k}) must be in [1, n_points={self.n_points}]"
            )
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"PointMAEConfig.mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.dim % self.heads:
            raise ConfigError(f"PointMAEConfig.dim {self.dim} must be divisible by heads {self.heads}")


def group_points(clouds: torch.Tensor, groups: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, M, 3)`` → centres ``(B, G, 3)`` (FPS) and centre-relative patches ``(B, G, k, 3)`` (kNN)."""
    if clouds.dim() != 3 or clouds.shape[-1] != 3:
        raise ValueError(f"point clouds must be (B, M, 3), got {tuple(clouds.shape)}")
    idx = farthest_point_sample(clouds, groups)
    centres = torch.gather(clouds, 1, idx[..., None].expand(-1, -1, 3))
    return centres, knn_group(clouds, centres, k)


class PointEncoder(nn.Module):
    """Patch embedding + centre positions + transformer blocks; ``forward`` returns normalised tokens."""

    def __init__(self, c: PointMAEConfig) -> None:
        super().__init__()
        self.embed = MiniPointNet(c.dim, c.embed_hidden)
        self.pos = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, c.dim))
        self.blocks = nn.ModuleList([Block(c.dim, c.heads) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.dim)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            tokens = blk(tokens + pos)
        return self.norm(tokens)

    def features(self, clouds: torch.Tensor, groups: int, k: int) -> torch.Tensor:
        """Global feature of whole clouds: ``[max-pool; mean-pool]`` of all tokens ``(B, 2·dim)``."""
        centres, patches = group_points(clouds, groups, k)
        z = self(self.embed(patches), self.pos(centres))
        return torch.cat([z.max(1).values, z.mean(1)], -1)


class PointMAE(Pretrained, nn.Module):
    config_class = PointMAEConfig

    def __init__(self, config: PointMAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or PointMAEConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        self.encoder = PointEncoder(c)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.dec_pos = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, c.dim))
        self.decoder = nn.ModuleList([Block(c.dim, c.heads) for _ in range(c.decoder_depth)])
        self.dec_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, 3 * c.k)

    @property
    def latent_dim(self) -> int:
        return 2 * self.config.dim

    def encode(self, clouds: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(clouds, self.config.groups, self.config.k)

    def forward(self, clouds: torch.Tensor, generator: torch.Generator | None = None) -> ModelOutput:
        c = self.config
        centres, patches = group_points(clouds, c.groups, c.k)
        tokens, pos = self.encoder.embed(patches), self.encoder.pos(centres)
        kept, mask, keep_idx, _ = random_masking(torch.cat([tokens, pos], -1), c.mask_ratio, generator)
        z_vis = self.encoder(kept[..., : c.dim], kept[..., c.dim :])  # the encoder never sees a mask token
        b = clouds.shape[0]
        msk_idx = mask.bool().nonzero()[:, 1].reshape(b, -1)  # hidden patches, same count per cloud
        take = lambda t, i: torch.gather(t, 1, i[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
        vis_c, msk_c = take(centres, keep_idx), take(centres, msk_idx)
        x = torch.cat([z_vis, self.mask_token.expand(b, msk_idx.shape[1], -1)], 1)
        p = self.dec_pos(torch.cat([vis_c, msk_c], 1))
        for blk in self.decoder:
            x = blk(x + p)
        pred = self.head(self.dec_norm(x[:, z_vis.shape[1] :])).reshape(b, -1, c.k, 3)
        true = torch.gather(patches, 1, msk_idx[..., None, None].expand(-1, -1, c.k, 3))
        loss = chamfer_distance(pred.reshape(-1, c.k, 3), true.reshape(-1, c.k, 3)).mean()
        return ModelOutput(loss=loss, losses={"chamfer": loss}, latent=z_vis.max(1).values, stats={"mask": mask})

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)


class PointFoldingAE(Pretrained, nn.Module):
    """Plain point AE: the same :class:`PointEncoder` over all patches → max-pooled code → a folding decoder
    (an MLP maps ``[code, grid point]`` to 3-D, one grid point per output point) → Chamfer to the whole cloud."""

    config_class = PointMAEConfig

    grid: torch.Tensor  # (side², 2) folding grid, a non-persistent buffer

    def __init__(self, config: PointMAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or PointMAEConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        self.encoder = PointEncoder(c)
        side = int(round(c.n_points**0.5))
        u = torch.linspace(-1, 1, side)
        self.register_buffer(
            "grid", torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2), persistent=False
        )
        self.fold = nn.Sequential(
            nn.Linear(c.dim + 2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 3)
        )

    def encode(self, clouds: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(clouds, self.config.groups, self.config.k)

    def forward(self, clouds: torch.Tensor, generator: torch.Generator | None = None) -> ModelOutput:
        c = self.config
        centres, patches = group_points(clouds, c.groups, c.k)
        code = self.encoder(self.encoder.embed(patches), self.encoder.pos(centres)).max(1).values  # (B, D)
        b, g = code.shape[0], self.grid.shape[0]
        pts = self.fold(torch.cat([code[:, None].expand(-1, g, -1), self.grid.expand(b, -1, -1)], -1))
        loss = chamfer_distance(pts, clouds).mean()
        return ModelOutput(loss=loss, losses={"chamfer": loss}, latent=code)

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)
