"""StackVAE-G: one shared per-channel window VAE, latents mixed along a learned sparse channel graph.

Li, Hu, Chen, Chen, Feng, "StackVAE-G: An efficient and interpretable model for time series
anomaly detection", AI Open 3 (2022); arXiv 2105.08397 (reference code ``liwk16/StackVAE``).

A window ``x`` (B, w, C) is read channel by channel: the *same* MLP encodes every channel's
w-step window (so the parameter count does not grow with C), a linear map projects each channel's
hidden features to ``latent_dim`` (the authors' ``h_z_net``), these projections are mixed along the
learned graph ``h̃ = λ·A h + (1 − λ)·h`` (:mod:`isthmus.nn.graph`), linear heads on h̃ give a
per-channel Gaussian posterior, and the same MLP decoder maps each channel's latent to the mean and
log-variance of its window. Layout as in the authors' code (``liwk16/StackVAE``,
``GraphVAEv4.py``). Loss terms (all per window, batch-mean):

* ``recon``        Σ over (w, C) of the squared error (the paper's MSE·C·w). With ``sample_output``
                   (the authors' code) the training error is that of a sample
                   x̂ = μ_x + exp(½ log σ_x²)·ε from the decoder's output Gaussian; evaluation and
                   scoring use μ_x. ``sample_output=False`` trains on μ_x,
* ``kl``           β · KL summed over channels and latent dims,
* ``graph``        γ · Σ over (w, C) of (x − A x)², the graph-consistency term (channels should
                   be predictable from their neighbours; this is what shapes A).

``graph_weight = 0`` (λ = 0) removes the graph entirely — no learner, no consistency term: the
paper's "stacked VAE without graph" ablation. Anomaly score per channel: the squared error of the
window's *last* step, reconstructed from the posterior mean (the paper averages 200 posterior
samples; the mean is its deterministic limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from isthmus.bottlenecks.gaussian import GaussianBottleneck, GaussianConfig
from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn.graph import GraphLearner, GraphLearnerConfig, mix_nodes
from isthmus.nn.mlp import MLP, MLPConfig

__all__ = ["StackVAEG", "StackVAEGConfig"]


@dataclass
class StackVAEGConfig(Config):
    """Paper defaults: hidden (200, 200), latent 20, embed 30, k = 10, α = 3, λ = 0.5."""

    n_channels: int = 8
    window: int = 100
    hidden: list[int] = field(default_factory=lambda: [200, 200])
    latent_dim: int = 20
    embed_dim: int = 30
    k: int = 10
    alpha: float = 3.0
    graph_init_scale: float = 1.0  # std of the initial channel embeddings (paper: 1)
    graph_weight: float = 0.5  # λ; 0 = no graph at all (ablation)
    consistency_weight: float = 1.0  # γ of the graph-consistency term
    beta: float = 1.0
    sample_output: bool = True  # train the reconstruction on a sample of the output Gaussian (authors' code)

    def validate(self) -> None:
        if self.n_channels < 1 or self.window < 1 or self.latent_dim < 1 or not self.hidden:
            raise ConfigError(
                f"StackVAEGConfig needs n_channels, window, latent_dim >= 1 and a hidden list, got "
                f"{self.n_channels}, {self.window}, {self.latent_dim}, {self.hidden}"
            )
        if not 0.0 <= self.graph_weight <= 1.0:
            raise ConfigError(f"StackVAEGConfig.graph_weight (λ) must be in [0, 1], got {self.graph_weight}")
        if self.consistency_weight < 0 or self.beta < 0:
            raise ConfigError("StackVAEGConfig.consistency_weight and beta must be >= 0")


class StackVAEG(Pretrained, nn.Module):
    """``forward(x)`` with ``x`` (B, window, C) → :class:`ModelOutput` (recon (B, w, C), latent (B, C·D)).

    >>> m = StackVAEG(StackVAEGConfig(n_channels=5, window=8, hidden=[16], latent_dim=3, k=2))
    >>> sorted(m(torch.randn(4, 8, 5)).losses)
    ['graph', 'kl', 'recon']
    """

    config_class = StackVAEGConfig  # save_pretrained/from_pretrained: see isthmus.io.Pretrained

    def __init__(self, config: StackVAEGConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or StackVAEGConfig()
        *inner, last = cfg.hidden
        self.encoder = MLP(MLPConfig(in_dim=cfg.window, out_dim=last, hidden=list(inner), out_activation="relu"))
        self.graph = (
            GraphLearner(GraphLearnerConfig(cfg.n_channels, cfg.embed_dim, cfg.k, cfg.alpha, cfg.graph_init_scale))
            if cfg.graph_weight > 0
            else None
        )
        self.project = nn.Linear(last, cfg.latent_dim)  # the authors' h_z_net: mixing acts on this projection
        self.heads = nn.Linear(cfg.latent_dim, 2 * cfg.latent_dim)  # μ and log σ² per channel
        self.bottleneck = GaussianBottleneck(GaussianConfig(latent_dim=cfg.latent_dim, beta=cfg.beta))
        # output mean and log-variance per step (the authors' x_mean_net / x_logvar_net)
        self.decoder = MLP(MLPConfig(in_dim=cfg.latent_dim, out_dim=2 * cfg.window, hidden=list(cfg.hidden)[::-1]))

    @property
    def latent_dim(self) -> int:
        return self.config.n_channels * self.config.latent_dim

    def adjacency(self) -> torch.Tensor:
        """The learned row-stochastic sparse channel graph ``(C, C)`` (identity when λ = 0), detached."""
        c = self.config.n_channels
        if self.graph is None:
            return torch.eye(c)
        with torch.no_grad():
            return self.graph().detach().cpu()

    def edge_weights(self) -> torch.Tensor:
        """Dense learned edge weights ``(C, C)`` before top-k (zeros when λ = 0), detached."""
        if self.graph is None:
            return torch.zeros(self.config.n_channels, self.config.n_channels)
        with torch.no_grad():
            return self.graph.dense().detach().cpu()

    def _check(self, x: torch.Tensor) -> None:
        cfg = self.config
        if x.dim() != 3 or x.shape[1:] != (cfg.window, cfg.n_channels):
            raise ValueError(
                f"StackVAEG expects windows of shape (B, {cfg.window}, {cfg.n_channels}) "
                f"(batch, window, channels), got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("StackVAEG input contains NaN or infinite values")

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self._check(x)
        cfg = self.config
        b, w, c = x.shape
        xc = x.transpose(1, 2)  # (B, C, w)
        h = self.project(self.encoder(xc.reshape(b * c, w))).reshape(b, c, -1)  # (B, C, D), shared by channels
        adj = self.graph() if self.graph is not None else None
        if adj is not None:
            h = mix_nodes(h, adj, cfg.graph_weight)
        bn = self.bottleneck(self.heads(h).reshape(b * c, -1))  # per-channel posterior, (B·C, D)
        recon, logvar = self.decoder(bn.latent).reshape(b, c, 2, w).unbind(2)  # μ_x, log σ_x², (B, C, w) each
        fit = recon
        if cfg.sample_output and self.training:
            fit = recon + torch.exp(0.5 * logvar) * torch.randn_like(recon)
        losses = {
            "recon": (fit - xc).pow(2).flatten(1).sum(1).mean(),
            "kl": bn.losses["kl"] * c,
        }  # bottleneck KL is per channel-row; × C = per window
        if adj is not None:
            resid = xc - torch.einsum("ij,bjw->biw", adj, xc)
            losses["graph"] = cfg.consistency_weight * resid.pow(2).flatten(1).sum(1).mean()
        return ModelOutput(
            loss=sum(losses.values()),
            losses=losses,
            recon=recon.transpose(1, 2),
            latent=bn.latent.reshape(b, -1),
            codes=bn.codes.reshape(b, -1),
            stats={"kl": bn.stats["kl"] * c},
        )

    def compute_loss(self, batch: Any) -> ModelOutput:
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch)

    @torch.no_grad()
    def channel_errors(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Squared error of each window's last step per channel, ``(B, C)``, posterior-mean decode."""
        was = self.training
        self.eval()
        try:
            outs = [(self(xb).recon[:, -1] - xb[:, -1]).pow(2) for xb in x.split(batch_size)]
        finally:
            self.train(was)
        return torch.cat(outs) if outs else x.new_zeros(0, self.config.n_channels)
