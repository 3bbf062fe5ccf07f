"""Vector quantization (VQ-VAE) and residual VQ.

van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning" (arXiv 1711.00937):
the encoder output snaps to its nearest codebook vector; the decoder sees the code through a
straight-through estimator; a commitment term β‖z − sg(e)‖² keeps the encoder near its codes and,
without EMA, a codebook term ‖sg(z) − e‖² moves the codes. With ``ema=True`` the codebook is instead an
exponential moving average of the encodings assigned to each code (Appendix A.1 of the paper), with
Laplace smoothing of the cluster sizes. Residual VQ (Zeghidour et al., SoundStream, arXiv 2107.03312)
quantizes the remaining error with a further codebook, ``n_quantizers`` times.

Extras from practice (see vector-quantize-pytorch issues on codebook collapse): k-means initialisation
from the first training batch and re-seeding of codes unused for ``dead_code_steps`` training steps.
All codebook state lives in registered buffers, so it round-trips through ``state_dict``/safetensors,
and every random choice uses the global torch RNG, so runs are deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.bottlenecks.codebook_stats import codebook_stats, kmeans
from isthmus.config import ConfigError

__all__ = ["VectorQuantizer", "VQConfig", "VQBottleneck", "ResidualVQConfig", "ResidualVQBottleneck"]


class VectorQuantizer(nn.Module):
    """A codebook of ``codebook_size`` vectors of width ``dim``, usable on its own.

    ``forward(z)`` takes (N, dim) and returns the nearest codes (N, dim) and their indices (N,).
    The returned codes carry gradient to the codebook only when ``ema=False`` (then it is a Parameter);
    straight-through and loss terms are the caller's business. In training mode it also runs the
    k-means initialisation (once), the EMA update and the dead-code reset.
    """

    codebook: torch.Tensor  # a buffer with EMA updates, else a Parameter
    ema_size: torch.Tensor
    ema_sum: torch.Tensor
    initialized: torch.Tensor
    unused_steps: torch.Tensor

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_steps: int = 0,
    ) -> None:
        super().__init__()
        self.codebook_size, self.dim, self.ema = codebook_size, dim, ema
        self.decay, self.eps = decay, eps
        self.kmeans_iters, self.dead_code_steps = kmeans_iters, dead_code_steps
        init = torch.randn(codebook_size, dim)  # (K, d)
        if ema:
            self.register_buffer("codebook", init)
        else:
            self.codebook = nn.Parameter(init)
        # EMA state: codebook = ema_sum / smoothed(ema_size); kept even without EMA so k-means init is uniform.
        self.register_buffer("ema_size", torch.ones(codebook_size))  # (K,)
        self.register_buffer("ema_sum", init.clone())  # (K, d)
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))  # (K,)

    @torch.no_grad()
    def init_from(self, z: torch.Tensor) -> None:
        """k-means initialisation of the codebook from encodings ``z`` (N, dim)."""
        centroids, counts = kmeans(z.detach(), self.codebook_size, self.kmeans_iters)
        counts = counts.clamp(min=1.0)  # an empty cluster keeps its centroid instead of decaying to 0
        self.codebook.data.copy_(centroids)
        self.ema_size.copy_(counts)
        self.ema_sum.copy_(centroids * counts[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index (N,) of the nearest code to each row of ``z`` (N, dim)."""
        cb = self.codebook
        dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ cb.t() + cb.pow(2).sum(1)[None]  # (N, K)
        return dist.argmin(1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.init_from(z)
        idx = self.nearest(z.detach())  # (N,)
        z_q = F.embedding(idx, self.codebook)  # (N, d); a copy, so later in-place updates do not touch it
        if self.training:
            self._update(z.detach(), idx)
        return z_q, idx

    @torch.no_grad()
    def _update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.codebook_size).to(z.dtype)  # (K,)
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, z)  # (K, d)
            self.ema_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.ema_size.sum()
            # Laplace smoothing: a code with (almost) no assignments is not divided by ~0.
            smoothed = (self.ema_size + self.eps) / (n + self.codebook_size * self.eps) * n
            self.codebook.copy_(self.ema_sum / smoothed[:, None])
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.dead_code_steps > 0:
            self._reset_dead(z)

    @torch.no_grad()
    def _reset_dead(self, z: torch.Tensor) -> None:
        """Re-seed codes unused for ``dead_code_steps`` steps with random encodings of this batch."""
        dead = (self.unused_steps >= self.dead_code_steps).nonzero().squeeze(1)  # (n_dead,)
        if dead.numel() == 0:
            return
        new = z[torch.randint(0, z.shape[0], (dead.numel(),))]  # (n_dead, d)
        self.codebook.data[dead] = new
        self.ema_size[dead] = 1.0
        self.ema_sum[dead] = new
        self.unused_steps[dead] = 0

    def expired(self) -> torch.Tensor:
        """Number of codes currently unused for at least ``dead_code_steps`` steps (or ever, if 0)."""
        limit = self.dead_code_steps if self.dead_code_steps > 0 else 1
        return (self.unused_steps >= limit).sum().float()


@dataclass
class VQConfig(BottleneckConfig):
    """The latent (``latent_dim``) is split into ``groups`` sub-vectors that share one codebook.

    ``beta`` weights the commitment term; ``codebook_weight`` the codebook term (only without EMA).
    ``dead_code_steps``: re-seed a code after this many training steps without use (0 = never).
    """

    codebook_size: int = 64
    groups: int = 1
    beta: float = 0.25
    codebook_weight: float = 1.0
    ema: bool = True
    decay: float = 0.99
    eps: float = 1e-5
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_steps: int = 100

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        checks = [
            ("codebook_size", self.codebook_size >= 1, ">= 1"),
            (
                "groups",
                self.groups >= 1 and self.latent_dim % self.groups == 0,
                f"a divisor of latent_dim={self.latent_dim}",
            ),
            ("beta", self.beta >= 0, ">= 0"),
            ("codebook_weight", self.codebook_weight >= 0, ">= 0"),
            ("decay", 0.0 <= self.decay < 1.0, "in [0, 1)"),
            ("eps", self.eps > 0, "> 0"),
            ("kmeans_iters", self.kmeans_iters >= 1, ">= 1"),
            ("dead_code_steps", self.dead_code_steps >= 0, ">= 0 (0 disables the reset)"),
        ]
        for field_name, ok, want in checks:
            if not ok:
                raise ConfigError(f"{name}.{field_name} must be {want}, got {getattr(self, field_name)!r}")

    def quantizer(self) -> VectorQuantizer:
        return VectorQuantizer(
            self.codebook_size,
            self.latent_dim // self.groups,
            self.ema,
            self.decay,
            self.eps,
            self.kmeans_init,
            self.kmeans_iters,
            self.dead_code_steps,
        )


def _vq_terms(z: torch.Tensor, z_q: torch.Tensor, cfg: VQConfig) -> dict[str, torch.Tensor]:
    """Unweighted commitment (moves the encoder) and codebook (moves the codes, non-EMA only) errors."""
    terms = {"commitment": F.mse_loss(z, z_q.detach())}
    if not cfg.ema:
        terms["codebook"] = F.mse_loss(z_q, z.detach())
    return terms


def _weighted(terms: dict[str, torch.Tensor], cfg: VQConfig) -> dict[str, torch.Tensor]:
    # A term with weight 0 is left out: it would be a loss with no gradient.
    weights = {"commitment": cfg.beta, "codebook": cfg.codebook_weight}
    return {k: weights[k] * v for k, v in terms.items() if weights[k] > 0}


@BOTTLENECKS.register("vq", VQConfig)
class VQBottleneck(Bottleneck):
    """VQ-VAE bottleneck. ``codes``: indices (B,) or (B, groups); latent = straight-through codes (B, D)."""

    config: VQConfig

    def __init__(self, config: VQConfig | None = None) -> None:
        super().__init__(config or VQConfig())
        self.quantizer = self.config.quantizer()

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        cfg, b = self.config, h.shape[0]
        z = h.reshape(b * cfg.groups, -1)  # (B*G, d)
        z_q, idx = self.quantizer(z)  # (B*G, d), (B*G,)
        latent = (z + (z_q - z).detach()).reshape(b, -1)  # (B, D), straight-through
        codes = idx.reshape(b, cfg.groups) if cfg.groups > 1 else idx  # (B, G) or (B,)
        terms = _vq_terms(z, z_q, cfg)
        stats: dict[str, torch.Tensor | float] = dict(codebook_stats(codes, cfg.codebook_size))
        stats["quantization_error"] = terms["commitment"].detach()
        stats["expired_codes"] = self.quantizer.expired()
        return BottleneckOutput(latent=latent, codes=codes, losses=_weighted(terms, cfg), stats=stats)


@dataclass
class ResidualVQConfig(VQConfig):
    """``n_quantizers`` codebooks, each quantizing what the previous ones left (commitment averaged over them)."""

    n_quantizers: int = 4

    def validate(self) -> None:
        super().validate()
        if self.n_quantizers < 1:
            raise ConfigError(f"ResidualVQConfig.n_quantizers must be >= 1, got {self.n_quantizers}")


@BOTTLENECKS.register("residual_vq", ResidualVQConfig)
class ResidualVQBottleneck(Bottleneck):
    """Residual VQ. ``codes``: indices (B, n_quantizers), or (B, groups, n_quantizers) with groups."""

    config: ResidualVQConfig

    def __init__(self, config: ResidualVQConfig | None = None) -> None:
        super().__init__(config or ResidualVQConfig())
        self.quantizers = nn.ModuleList(self.config.quantizer() for _ in range(self.config.n_quantizers))

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        cfg, b = self.config, h.shape[0]
        z = h.reshape(b * cfg.groups, -1)  # (B*G, d)
        residual, total = z, torch.zeros_like(z)
        terms: dict[str, torch.Tensor] = {}
        indices = []
        for q in self.quantizers:
            z_q, idx = q(residual)  # (B*G, d), (B*G,)
            for k, v in _vq_terms(residual, z_q, cfg).items():
                terms[k] = terms.get(k, 0.0) + v / cfg.n_quantizers
            total = total + z_q
            residual = residual - z_q.detach()  # the next stage sees only what is left
            indices.append(idx)
        latent = (z + (total - z).detach()).reshape(b, -1)  # (B, D)
        idx_all = torch.stack(indices, 1)  # (B*G, Q)
        codes = idx_all.reshape(b, cfg.groups, -1) if cfg.groups > 1 else idx_all
        stats: dict[str, torch.Tensor | float] = dict(
            codebook_stats(idx_all, cfg.codebook_size, separate_codebooks=True)
        )
        stats["bits_per_latent"] = stats["bits_per_latent"] * cfg.groups  # stats above are per group row
        stats["bits_capacity"] = stats["bits_capacity"] * cfg.groups
        stats["quantization_error"] = F.mse_loss(total, z).detach()
        stats["expired_codes"] = sum(cast(VectorQuantizer, q).expired() for q in self.quantizers)
        return BottleneckOutput(latent=latent, codes=codes, losses=_weighted(terms, cfg), stats=stats)
