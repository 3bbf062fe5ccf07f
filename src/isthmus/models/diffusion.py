"""Flow-matching prior over latent vectors (rectified flow; Lipman et al. 2022, Liu et al. 2022), the
second stage of a two-stage generator (RAE-diffusion, DDMI, DiCoDe use diffusion/flow priors on latents).

Training: ``x_t = (1 − t)·x + t·ε`` with ``t ~ U(0, 1)`` (optionally shifted, below) and the network
regresses the velocity ``ε − x``. Sampling integrates ``dx/dt = v(x, t)`` from ``t = 1`` (noise) to
``t = 0`` with Euler steps, seeded by the caller's generator. ``time_shift = s`` maps ``t ↦ s·t / (1 +
(s − 1)·t)``, spending more of training and sampling at high noise — the dimension-dependent schedule
shift that RAE-diffusion (seed 27) finds necessary for wide latents (``s = 1``: no shift).
The velocity network is an MLP with a sinusoidal time embedding and residual blocks (``width``,
``depth``), or with ``net="dit"`` a small diffusion transformer (:class:`isthmus.nn.dit.DiT`) over
``tokens`` latent tokens of ``dim / tokens`` features (optionally with RAE's wide ``head_width`` head).
``n_classes > 0`` conditions on class labels, dropped to a null class with probability ``label_drop``
in training so that sampling can use classifier-free guidance ``v = v_c + w·(v_c − v_u)`` (``w = 0``:
the plain conditional). ``prediction="x"`` makes the network predict the clean ``x`` instead (loss
``‖x̂ − x‖²``, velocity ``(x_t − x̂)/t``): a network narrower than the data cannot pass the noise
through to predict ``ε − x``, but can predict ``x`` when the data lie near a low-dimensional set (Li &
He 2025, "Back to Basics: Let Denoising Generative Models Denoise", arXiv 2511.13720).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput

__all__ = ["FlowMatchingConfig", "FlowMatchingPrior", "shift_time"]


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


@dataclass
class FlowMatchingConfig(Config):
    dim: int = 16
    width: int = 256
    depth: int = 3
    time_shift: float = 1.0
    steps: int = 50  # Euler steps when sampling
    net: str = "mlp"  # "mlp" or "dit"
    tokens: int = 1  # dit: the latent is read as (tokens, dim / tokens)
    heads: int = 4
    head_width: int = 0  # dit: > 0 adds the wide shallow (DDT) head
    head_depth: int = 2
    n_classes: int = 0
    label_drop: float = 0.1
    cond_dim: int = 0  # mlp: > 0 conditions on a vector (e.g. deep tokens), passed as ``cond=``
    prediction: str = "velocity"  # what the network outputs: "velocity" (ε − x) or "x" (the clean data)

    def validate(self) -> None:
        if self.dim < 1 or self.width < 2 or self.depth < 1 or self.steps < 1:
            raise ConfigError("FlowMatchingConfig needs dim >= 1, width >= 2, depth >= 1, steps >= 1")
        if self.net not in ("mlp", "dit"):
            raise ConfigError(f"FlowMatchingConfig.net must be 'mlp' or 'dit', got {self.net!r}")
        if self.tokens < 1 or self.dim % self.tokens:
            raise ConfigError(f"FlowMatchingConfig.dim {self.dim} must be divisible by tokens {self.tokens}")
        if self.n_classes < 0 or not 0 <= self.label_drop < 1:
            raise ConfigError("FlowMatchingConfig needs n_classes >= 0 and 0 <= label_drop < 1")
        if self.cond_dim < 0 or (self.cond_dim and self.net != "mlp"):
            raise ConfigError("FlowMatchingConfig.cond_dim must be >= 0 and is for net='mlp'")
        if self.time_shift <= 0:
            raise ConfigError(f"FlowMatchingConfig.time_shift must be > 0, got {self.time_shift}")
        if self.prediction not in ("velocity", "x"):
            raise ConfigError(f"FlowMatchingConfig.prediction must be 'velocity' or 'x', got {self.prediction!r}")


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


class FlowMatchingPrior(Pretrained, nn.Module):
    config_class = FlowMatchingConfig

    def __init__(self, config: FlowMatchingConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or FlowMatchingConfig()
        self.config = c = c.with_overrides(overrides) if overrides else c
        if c.net == "dit":
            from isthmus.nn.dit import DiT

            self.dit = DiT(
                c.dim // c.tokens, c.tokens, c.width, c.depth, c.heads, c.n_classes, c.head_width, c.head_depth
            )
            return
        self.label = nn.Embedding(c.n_classes + 1, c.width) if c.n_classes else None
        self.cond = nn.Linear(c.cond_dim, c.width) if c.cond_dim else None
        self.inp = nn.Linear(c.dim, c.width)
        self.time = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.blocks = nn.Sequential(*[_ResBlock(c.width) for _ in range(c.depth)])
        self.out = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.dim))

    def _time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = self.config.width // 2
        freq = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
        arg = 1000.0 * t[:, None] * freq[None]
        emb = torch.cat([arg.sin(), arg.cos()], 1)
        return self.time(nn.functional.pad(emb, (0, self.config.width - emb.shape[1])))

    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predicted ``ε − x`` at times ``t``; ``y``: class labels (None: the null class); ``cond``: the
        conditioning vectors ``(B, cond_dim)`` of an MLP prior with ``cond_dim > 0``."""
        out = self.network(x, t, y, cond)
        if self.config.prediction == "x":  # ε − x₀ = (x_t − x₀) / t; sampling never reaches t = 0
            return (x - out) / t.clamp_min(1e-4)[:, None]
        return out

    def _loss(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        noise = torch.randn_like(x)
        xt = (1 - t[:, None]) * x + t[:, None] * noise
        if self.config.prediction == "x":
            return (self.network(xt, t, y, cond) - x).pow(2).mean()
        return (self.network(xt, t, y, cond) - (noise - x)).pow(2).mean()

    def network(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The raw network output: ``ε − x`` or, with ``prediction="x"``, the clean ``x``."""
        c = self.config
        if x.dim() != 2 or x.shape[1] != c.dim:
            raise ValueError(f"expected (B, {c.dim}) latents, got {tuple(x.shape)}")
        if y is not None and (
            not c.n_classes or y.shape != (len(x),) or int(y.min()) < 0 or int(y.max()) > c.n_classes
        ):
            raise ValueError(
                f"labels must be ({len(x)},) integers in [0, {c.n_classes}] for a prior with n_classes = {c.n_classes}"
            )
        if c.net == "dit":
            if cond is not None:
                raise ValueError("cond is for the MLP net (cond_dim > 0)")
            return self.dit(x.reshape(len(x), c.tokens, -1), t, y).reshape(len(x), -1)
        h = self.inp(x) + self._time_embedding(t)
        if self.label is not None:
            h = h + self.label(y if y is not None else torch.full((len(x),), c.n_classes, dtype=torch.long))
        if self.cond is not None:
            if cond is None or cond.shape != (len(x), c.cond_dim):
                raise ValueError(f"this prior needs cond of shape ({len(x)}, {c.cond_dim})")
            h = h + self.cond(cond)
        return self.out(self.blocks(h))

    def compute_loss(self, batch: Any) -> ModelOutput:
        c = self.config
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 and c.n_classes else None
        if y is not None and self.training and c.label_drop > 0:
            y = torch.where(torch.rand(len(y)) < c.label_drop, torch.full_like(y, c.n_classes), y)
        t = shift_time(torch.rand(x.shape[0], device=x.device), c.time_shift)
        loss = self._loss(x, t, y)
        return ModelOutput(loss=loss, losses={"velocity_mse" if c.prediction == "velocity" else "x_mse": loss})

    def flow_matching_loss(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The training loss for a vector-conditioned prior (differentiable in ``cond``, so an encoder that
        produces it trains through this loss)."""
        t = shift_time(torch.rand(x.shape[0], device=x.device), self.config.time_shift)
        return self._loss(x, t, cond=cond)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        labels: torch.Tensor | None = None,
        guidance: float = 0.0,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` latents by Euler integration from noise (``t = 1``) to data (``t = 0``), optionally
        class-conditional with classifier-free ``guidance``."""
        c = self.config
        k = steps or c.steps
        x = torch.randn(n, c.dim, generator=generator)
        ts = shift_time(torch.linspace(1.0, 0.0, k + 1), c.time_shift)
        for i in range(k):
            t = ts[i].expand(n)
            v = self.velocity(x, t, labels, cond)
            if guidance and labels is not None:
                v = v + guidance * (v - self.velocity(x, t, None, cond))
            x = x + (ts[i + 1] - ts[i]) * v
        return x
