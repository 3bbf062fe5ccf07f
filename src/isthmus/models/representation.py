"""Representation autoencoder (RAE; Zheng et al. 2025, arXiv 2510.11690): a frozen pretrained encoder's
tokens, normalised by their dataset mean and variance, as the latent space; only a decoder is trained.

:class:`RepresentationAutoencoder` wraps any module ``encoder(x) -> (B, N, D)`` tokens. The encoder is frozen
(``requires_grad`` off, kept in eval mode, run under ``no_grad``), so no gradient ever reaches it.
:meth:`fit_normaliser` stores per-feature mean/std over a data set (the code's ``rae.py`` normalises the
encoder output by dataset statistics). The decoder is trained on *noise-augmented* latents:
``z + σε`` with ``σ ~ U(0, noise_tau)`` per sample (the paper's ``noise_tau``, 0.8), with an L1 loss, so
that it tolerates the imperfect latents a diffusion prior produces. ``encode`` returns the normalised
latents flattened to ``(B, N·D)``; ``decode`` maps them back to images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from isthmus.models.output import ModelOutput

__all__ = ["RepresentationAutoencoder"]


class RepresentationAutoencoder(nn.Module):
    mean: torch.Tensor  # per-channel token statistics (buffers, set by fit_normaliser)
    std: torch.Tensor

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, tokens: int, token_dim: int, noise_tau: float = 0.8
    ) -> None:
        super().__init__()
        if noise_tau < 0:
            raise ValueError(f"noise_tau must be >= 0, got {noise_tau}")
        self.encoder, self.decoder = encoder, decoder
        self.tokens, self.token_dim, self.noise_tau = tokens, token_dim, noise_tau
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()  # frozen from the start (train() keeps it so)
        self.register_buffer("mean", torch.zeros(token_dim))
        self.register_buffer("std", torch.ones(token_dim))

    def train(self, mode: bool = True) -> "RepresentationAutoencoder":
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout / norm-statistics updates either
        return self

    @property
    def latent_dim(self) -> int:
        return self.tokens * self.token_dim

    @torch.no_grad()
    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        t: torch.Tensor = self.encoder(x)
        if t.shape[1:] != (self.tokens, self.token_dim):
            raise ValueError(f"encoder returned {tuple(t.shape)}, expected (B, {self.tokens}, {self.token_dim})")
        return t

    @torch.no_grad()
    def fit_normaliser(self, x: torch.Tensor, batch_size: int = 1024) -> "RepresentationAutoencoder":
        t = torch.cat([self._tokens(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        flat = t.reshape(-1, self.token_dim)
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-6))
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return ((self._tokens(x) - self.mean) / self.std).reshape(len(x), -1)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(len(z), self.tokens, self.token_dim) * self.std + self.mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.reshape(len(z), -1))

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        z = self.encode(x)
        if self.training and self.noise_tau > 0:
            sigma = torch.rand(len(z), 1, device=z.device) * self.noise_tau
            z = z + sigma * torch.randn_like(z)
        recon = self.decode(z)
        loss = (recon - x.reshape(recon.shape)).abs().mean()
        return ModelOutput(loss=loss, losses={"l1": loss}, recon=recon)
