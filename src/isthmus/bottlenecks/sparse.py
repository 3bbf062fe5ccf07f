"""Sparse-autoencoder (SAE) activations as bottlenecks: ReLU+L1, TopK, BatchTopK, JumpReLU, top-AFA, Matryoshka.

Each family maps pre-activations ``h`` (B, m) to a sparse code ``z`` (B, m) and is usable alone, inside
:class:`isthmus.models.AutoEncoder`, or inside :class:`isthmus.interp.sae.SparseAutoEncoder` (which
adds the tied pre-bias, the unit-norm linear decoder, AuxK and the sparse TopK backward).

* ``sae_relu`` — ReLU + L1 with the L1 weighted by decoder row norms (Anthropic "Towards
  Monosemanticity" / "April update" 2024; Bricken et al.), coefficient warm-up over ``l1_warmup_steps``.
* ``sae_topk`` — keep the k largest (Gao et al., "Scaling and evaluating sparse autoencoders", arXiv 2406.04093).
* ``sae_batchtopk`` — keep the k·B largest over the batch (Bussmann, Leask, Nanda, arXiv 2412.06410); a
  global threshold, an EMA of the smallest kept activation, replaces it in eval mode.
* ``sae_jumprelu`` — z = h·H(h − θ) with a learned per-latent θ trained through a straight-through
  estimator with a rectangle kernel, plus an L0 penalty (Rajamanoharan et al., arXiv 2407.14435).
* ``sae_topafa`` — top-AFA (Lee, Davies, Canby, Hockenmaier 2025, "Evaluating and designing sparse
  autoencoders by approximating quasi-orthogonality", arXiv 2503.24277): per-sample k chosen so that the
  norm of the decoder-weighted code, ‖f ⊙ ‖d‖‖₂, best matches the input norm ‖x − b_dec‖₂, plus the AFA
  norm loss λ(‖f ⊙ ‖d‖‖₂ − ‖x‖₂)².
* ``sae_matryoshka`` — BatchTopK with nested dictionary prefixes (Bussmann et al., "Learning multi-level
  features with Matryoshka SAEs", arXiv 2503.17547; Nabeshima 2024); the SAE model sums the
  reconstruction losses of every prefix.

Dead-latent tracking is shared: a ``steps_since_fired`` buffer counts training forwards since each
latent was last non-zero; :meth:`SparseBottleneck.dead_mask` feeds AuxK and resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.config import ConfigError

__all__ = [
    "SparseConfig",
    "SparseBottleneck",
    "ReLUL1Config",
    "ReLUL1Bottleneck",
    "TopKConfig",
    "afa_coeff_for",
    "TopKBottleneck",
    "BatchTopKConfig",
    "BatchTopKBottleneck",
    "JumpReLUConfig",
    "JumpReLUBottleneck",
    "TopAFAConfig",
    "TopAFABottleneck",
    "MatryoshkaSAEConfig",
    "MatryoshkaSAEBottleneck",
]


@dataclass
class SparseConfig(BottleneckConfig):
    """``dead_steps``: training forwards without firing after which a latent counts as dead."""

    dead_steps: int = 1000

    def validate(self) -> None:
        super().validate()
        if self.dead_steps < 1:
            raise ConfigError(f"{type(self).__name__}.dead_steps must be >= 1, got {self.dead_steps}")


class SparseBottleneck(Bottleneck):
    """Base of the SAE activations. ``forward(h, decoder_norm=None, input_norm=None)``.

    ``decoder_norm`` (m,) weights sparsity penalties / AFA scores (ones when absent, i.e. unit-norm
    decoder); ``input_norm`` (B,) is ‖x − b_dec‖ for top-AFA (defaults to ‖h‖).
    """

    config: SparseConfig
    exact_k: bool = False  # True where every sample keeps exactly k latents (TopK)
    steps_since_fired: torch.Tensor  # buffer

    def __init__(self, config: SparseConfig) -> None:
        super().__init__(config)
        self.register_buffer("steps_since_fired", torch.zeros(config.latent_dim, dtype=torch.long))

    def dead_mask(self) -> torch.Tensor:
        """(m,) bool: latents that have not fired for ``dead_steps`` training forwards."""
        return self.steps_since_fired >= self.config.dead_steps

    @torch.no_grad()
    def track(self, fired: torch.Tensor) -> None:
        """Update dead-latent counters from ``fired`` (m,) bool (called in training mode)."""
        self.steps_since_fired.add_(1).masked_fill_(fired, 0)

    def _warm(self, warmup_steps: int) -> float:
        return 1.0 if warmup_steps <= 0 else min(1.0, (int(self.step) + 1) / warmup_steps)

    def _output(
        self, z: torch.Tensor, codes: torch.Tensor | None = None, losses: dict | None = None, **stats
    ) -> BottleneckOutput:
        active = z != 0
        if self.training:
            self.track(active.any(0))
        stats = {"l0": active.sum(1).float().mean().detach(), "dead_fraction": self.dead_mask().float().mean(), **stats}
        return BottleneckOutput(latent=z, codes=codes, losses=losses or {}, stats=stats)

    def forward(
        self, h: torch.Tensor, decoder_norm: torch.Tensor | None = None, input_norm: torch.Tensor | None = None
    ) -> BottleneckOutput:  # pragma: no cover
        raise NotImplementedError


# ---- ReLU + L1 -------------------------------------------------------------------------------------
@dataclass
class ReLUL1Config(SparseConfig):
    l1_coeff: float = 1e-3
    l1_warmup_steps: int = 0


@BOTTLENECKS.register("sae_relu", ReLUL1Config)
class ReLUL1Bottleneck(SparseBottleneck):
    """z = ReLU(h); loss ``l1`` = λ·warm(t)·mean_b Σ_i z_i‖d_i‖ (L1 weighted by decoder row norm)."""

    def forward(self, h, decoder_norm=None, input_norm=None):
        self.check_input(h)
        z = torch.relu(h)
        weighted = z if decoder_norm is None else z * decoder_norm
        l1 = self.config.l1_coeff * self._warm(self.config.l1_warmup_steps) * weighted.sum(1).mean()
        return self._output(z, losses={"l1": l1} if self.config.l1_coeff > 0 else {})


# ---- TopK ------------------------------------------------------------------------------------------
@dataclass
class TopKConfig(SparseConfig):
    k: int = 32

    def validate(self) -> None:
        super().validate()
        if self.k < 1:
            raise ConfigError(f"{type(self).__name__}.k must be >= 1, got {self.k}")

    @property
    def k_eff(self) -> int:
        return min(self.k, self.latent_dim)


@BOTTLENECKS.register("sae_topk", TopKConfig)
class TopKBottleneck(SparseBottleneck):
    """Keep the ``k`` largest pre-activations per sample, then ReLU. ``codes`` are their (B, k) indices."""

    config: TopKConfig
    exact_k = True

    def forward(self, h, decoder_norm=None, input_norm=None):
        self.check_input(h)
        vals, idx = h.topk(self.config.k_eff, dim=1)  # (B, k)
        z = h.new_zeros(h.shape).scatter(1, idx, torch.relu(vals))
        return self._output(z, codes=idx)


# ---- BatchTopK -------------------------------------------------------------------------------------
@dataclass
class BatchTopKConfig(TopKConfig):
    threshold_momentum: float = 0.99

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.threshold_momentum < 1.0:
            raise ConfigError(f"{type(self).__name__}.threshold_momentum must be in [0, 1)")


@BOTTLENECKS.register("sae_batchtopk", BatchTopKConfig)
class BatchTopKBottleneck(SparseBottleneck):
    """Training: keep the k·B largest ReLU activations of the whole batch (mean L0 = k, per-sample
    varies). The smallest kept value is tracked as an EMA in the ``threshold`` buffer; eval mode uses
    z = ReLU(h)·[h > threshold] (per-sample top-k until a threshold has been estimated)."""

    config: BatchTopKConfig
    threshold: torch.Tensor  # buffer

    def __init__(self, config: BatchTopKConfig) -> None:
        super().__init__(config)
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not estimated yet

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        a = torch.relu(h)
        k = self.config.k_eff
        if not self.training:
            if float(self.threshold) >= 0:
                return a * (h > self.threshold)
            vals, idx = a.topk(k, dim=1)
            return a.new_zeros(a.shape).scatter(1, idx, vals)
        flat = a.reshape(-1)
        vals, idx = flat.topk(min(k * a.shape[0], flat.numel()))
        z = torch.zeros_like(flat).scatter(0, idx, vals).reshape(a.shape)
        self.update_threshold(vals)
        return z

    @torch.no_grad()
    def update_threshold(self, kept: torch.Tensor) -> None:
        """EMA of the smallest positive kept activation (also called by the SAE's sparse-kernel path)."""
        pos = kept[kept > 0]
        if pos.numel():
            low = pos.min()
            mom = self.config.threshold_momentum
            new = low if float(self.threshold) < 0 else mom * self.threshold + (1 - mom) * low
            self.threshold.copy_(new)

    def forward(self, h, decoder_norm=None, input_norm=None):
        self.check_input(h)
        return self._output(self.activate(h), threshold=float(self.threshold))


# ---- JumpReLU --------------------------------------------------------------------------------------
def _rect(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """y = h·H(h − θ); ∂y/∂θ ≈ −(θ/ε)·K((h − θ)/ε) (pseudo-derivative of arXiv 2407.14435 eq. 11)."""

    @staticmethod
    def forward(ctx, h, theta, bandwidth: float):
        ctx.save_for_backward(h, theta)
        ctx.bandwidth = bandwidth
        return h * (h > theta)

    @staticmethod
    def backward(ctx, g):
        h, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        g_h = g * (h > theta)
        g_theta = (-(theta / eps) * _rect((h - theta) / eps) * g).sum(0)
        return g_h, g_theta, None


class _Step(torch.autograd.Function):
    """H(h − θ); gradient only to θ: −(1/ε)·K((h − θ)/ε) (arXiv 2407.14435 eq. 12)."""

    @staticmethod
    def forward(ctx, h, theta, bandwidth: float):
        ctx.save_for_backward(h, theta)
        ctx.bandwidth = bandwidth
        return (h > theta).to(h.dtype)

    @staticmethod
    def backward(ctx, g):
        h, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        return None, (-(1.0 / eps) * _rect((h - theta) / eps) * g).sum(0), None


@dataclass
class JumpReLUConfig(SparseConfig):
    l0_coeff: float = 1e-3
    l0_warmup_steps: int = 0
    threshold_init: float = 1e-3
    bandwidth: float = 1e-3

    def validate(self) -> None:
        super().validate()
        if not (self.threshold_init > 0 and self.bandwidth > 0):
            raise ConfigError(f"{type(self).__name__}: threshold_init and bandwidth must be > 0")


@BOTTLENECKS.register("sae_jumprelu", JumpReLUConfig)
class JumpReLUBottleneck(SparseBottleneck):
    """JumpReLU with a learned per-latent threshold θ = exp(log_threshold); loss ``l0`` = λ·mean_b ‖z‖₀."""

    def __init__(self, config: JumpReLUConfig) -> None:
        super().__init__(config)
        self.log_threshold = nn.Parameter(torch.full((config.latent_dim,), math.log(config.threshold_init)))

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def forward(self, h, decoder_norm=None, input_norm=None):
        self.check_input(h)
        theta, bw = self.threshold, self.config.bandwidth
        z = _JumpReLU.apply(h, theta, bw)
        losses = {}
        if self.config.l0_coeff > 0:
            l0 = _Step.apply(h, theta, bw).sum(1).mean()
            losses["l0"] = self.config.l0_coeff * self._warm(self.config.l0_warmup_steps) * l0
        return self._output(z, losses=losses)


# ---- top-AFA ---------------------------------------------------------------------------------------
@dataclass
class TopAFAConfig(SparseConfig):
    """``k_max`` caps the per-sample k (None: min(m, 256)); ``afa_coeff`` weights the AFA norm loss against
    :class:`~isthmus.interp.sae.SparseAutoEncoder`'s reconstruction loss, a per-token *sum* of squared errors.
    The authors' code (SewoongLee/top-afa-sae) averages that error over the d dimensions too, so their λ is
    ``afa_coeff = λ·d`` here (their 1/32 at d = 768 is 24): use :func:`afa_coeff_for`."""

    k_max: int | None = None
    afa_coeff: float = 1.0 / 32

    def validate(self) -> None:
        super().validate()
        if self.k_max is not None and self.k_max < 1:
            raise ConfigError(f"{type(self).__name__}.k_max must be >= 1, got {self.k_max}")


def afa_coeff_for(coeff: float, d: int) -> float:
    """Our ``afa_coeff`` for the authors' λ: their loss is mean_{b,j}(x̂ − x)² + λ·mean_b(‖f‖ − ‖x‖)²; ours
    sums the squared error over the d dimensions, so the same balance needs λ·d."""
    return coeff * d


@BOTTLENECKS.register("sae_topafa", TopAFAConfig)
class TopAFABottleneck(SparseBottleneck):
    """Per-sample k from quasi-orthogonality: with ε-orthogonal unit atoms ‖x‖ ≈ ‖f ⊙ ‖d‖‖, so rank the
    latents by (a_i‖d_i‖)², take the prefix whose cumulative norm √Σ is closest to ‖x − b_dec‖ and keep it.
    ``stats['k_mean']`` is the mean chosen k; ``codes`` is the (B,) chosen k."""

    def forward(self, h, decoder_norm=None, input_norm=None):
        self.check_input(h)
        a = torch.relu(h)
        m = a.shape[1]
        k_max = min(self.config.k_max or 256, m)
        scored = a if decoder_norm is None else a * decoder_norm
        vals, idx = scored.topk(k_max, dim=1)  # sorted descending, (B, k_max)
        target = h.detach().norm(dim=1) if input_norm is None else input_norm.detach()  # (B,)
        cum = vals.detach().pow(2).cumsum(1).sqrt()  # (B, k_max)
        k = (cum - target[:, None]).abs().argmin(1) + 1  # (B,)
        keep = torch.arange(k_max, device=h.device)[None] < k[:, None]
        z = a.new_zeros(a.shape).scatter(1, idx, a.gather(1, idx) * keep)
        losses = {}
        if self.config.afa_coeff > 0:
            f_norm = (vals * keep).norm(dim=1)  # ‖f ⊙ ‖d‖‖ of the kept latents
            losses["afa"] = self.config.afa_coeff * (f_norm - target).pow(2).mean()
        return self._output(z, codes=k, losses=losses, k_mean=k.float().mean())


# ---- Matryoshka ------------------------------------------------------------------------------------
@dataclass
class MatryoshkaSAEConfig(BatchTopKConfig):
    """``prefix_fractions``: nested dictionary sizes as fractions of ``latent_dim`` (last must be 1)."""

    prefix_fractions: list[float] = (0.125, 0.25, 0.5, 1.0)  # type: ignore[assignment]

    def validate(self) -> None:
        super().validate()
        fr = list(self.prefix_fractions)
        if not fr or any(not 0 < f <= 1 for f in fr) or fr != sorted(fr) or fr[-1] != 1.0:
            raise ConfigError(f"{type(self).__name__}.prefix_fractions must increase in (0, 1] and end at 1, got {fr}")


@BOTTLENECKS.register("sae_matryoshka", MatryoshkaSAEConfig)
class MatryoshkaSAEBottleneck(BatchTopKBottleneck):
    """BatchTopK whose first ``nested_sizes[i]`` latents must reconstruct on their own (the SAE model
    adds one reconstruction loss per prefix). Alone or in an AutoEncoder it behaves as BatchTopK."""

    config: MatryoshkaSAEConfig

    @property
    def nested_sizes(self) -> list[int]:
        m = self.config.latent_dim
        return sorted({max(1, min(m, round(f * m))) for f in self.config.prefix_fractions} | {m})
