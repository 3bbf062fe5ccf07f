"""Trainable low-rank linear layers with ordered dropout over rank (Maestro / LoD).

Horváth, Laskaridis, Rajput & Wang, "Maestro: Uncovering Low-Rank Structures via Trainable
Decomposition" (ICML 2024, arXiv 2308.14929; the issue brief's 2404.02446 is a different paper). A weight W ∈ R^{out×in}
is factorised as W = U Vᵀ with U (out, r) and V (in, r). Training uses:

* **ordered dropout** (low-rank ordered decomposition): each training forward keeps only the first
  b ~ U{1..r} components, so component i is trained in every prefix that contains it and the
  components come out ordered by importance (for a linear autoencoder on isotropic data: the
  PCA directions, in order);
* a **hierarchical group lasso**, λ Σ_i (‖V[:, i:]‖_F + ‖U[:, i:]‖_F) — tail sums, so later
  components are shrunk first; exposed as the named loss term ``group_lasso``;
* **progressive pruning**: components with importance ‖u_i‖·‖v_i‖ < tol are removed for real
  (the parameters shrink, and ``config.rank`` follows so the model saves and reloads at its new size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from isthmus.config import Config, ConfigError

__all__ = [
    "LowRankLinearConfig",
    "LowRankLinear",
    "low_rank_losses",
    "prune_low_rank",
    "set_rank_fraction",
    "svd_truncated_copy",
]


@dataclass
class LowRankLinearConfig(Config):
    """``rank`` 0 = full rank min(in, out). ``ordered_dropout`` samples a prefix rank per training
    forward; ``group_lasso`` is λ (5e-3 in the Maestro code); 0 disables the term."""

    in_dim: int = 64
    out_dim: int = 64
    rank: int = 0
    bias: bool = True
    ordered_dropout: bool = True
    group_lasso: float = 5e-3

    def validate(self) -> None:
        name = type(self).__name__
        if self.in_dim < 1 or self.out_dim < 1:
            raise ConfigError(f"{name}: in_dim and out_dim must be >= 1, got {self.in_dim}, {self.out_dim}")
        if not 0 <= self.rank <= min(self.in_dim, self.out_dim):
            raise ConfigError(
                f"{name}.rank must be in [0, {min(self.in_dim, self.out_dim)}] (0 = full), got {self.rank}"
            )
        if self.group_lasso < 0:
            raise ConfigError(f"{name}.group_lasso must be >= 0, got {self.group_lasso}")


class LowRankLinear(nn.Module):
    """``y = x V[:, :b] U[:, :b]ᵀ + bias`` with b = the active rank. Input ``(..., in_dim)``."""

    def __init__(self, config: LowRankLinearConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or LowRankLinearConfig()
        if overrides:
            config = config.with_overrides(overrides)
        if config.rank == 0:
            config = config.with_overrides({"rank": min(config.in_dim, config.out_dim)})
        self.config = config
        r = config.rank
        # Same fan-in scale as nn.Linear for the product: Var(W_ij) ≈ 1/(3·in).
        bound = (1.0 / math.sqrt(config.in_dim)) ** 0.5 / r**0.25
        self.V = nn.Parameter(torch.empty(config.in_dim, r).uniform_(-bound, bound))  # (in, r)
        self.U = nn.Parameter(torch.empty(config.out_dim, r).uniform_(-bound, bound))  # (out, r)
        self.bias = nn.Parameter(torch.zeros(config.out_dim)) if config.bias else None
        self.fixed_rank: int | None = None  # set by set_rank_fraction: every forward uses this prefix

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int = 0, **kwargs) -> "LowRankLinear":
        """Initialise from a dense layer by SVD, splitting √S between the factors (``decompose_linear``)."""
        out_dim, in_dim = layer.weight.shape
        module = cls(
            LowRankLinearConfig(in_dim=in_dim, out_dim=out_dim, rank=rank, bias=layer.bias is not None, **kwargs)
        )
        r = module.rank
        u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
        with torch.no_grad():
            module.U.copy_(u[:, :r] * s[:r].sqrt())
            module.V.copy_(vh[:r].T * s[:r].sqrt())
            if layer.bias is not None and module.bias is not None:
                module.bias.copy_(layer.bias.detach())
        return module

    @property
    def rank(self) -> int:
        return self.U.shape[1]

    @property
    def in_dim(self) -> int:
        return self.config.in_dim

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def sample_rank(self) -> int:
        """b ~ U{1..r}: uses the global torch RNG so seeded runs are reproducible."""
        return int(torch.randint(1, self.rank + 1, ()).item())

    def forward(self, x: torch.Tensor, rank: int | None = None) -> torch.Tensor:
        """``rank`` truncates to the first ``rank`` components; else ``fixed_rank`` (see
        :func:`set_rank_fraction`) does; else in training with ordered dropout a prefix rank is sampled."""
        if x.dim() > 2 and x.shape[-1] != self.in_dim:
            x = x.flatten(1)  # (B, C, H, W) -> (B, C*H*W), as the MLP block does
        if rank is None and self.fixed_rank is not None:
            rank = min(self.fixed_rank, self.rank)
        if rank is None:
            rank = self.sample_rank() if self.training and self.config.ordered_dropout else self.rank
        if not 1 <= rank <= self.rank:
            raise ValueError(f"rank must be in [1, {self.rank}], got {rank}")
        y = (x @ self.V[:, :rank]) @ self.U[:, :rank].T  # (B, in) -> (B, b) -> (B, out)
        return y + self.bias if self.bias is not None else y

    def weight(self, rank: int | None = None) -> torch.Tensor:
        """The dense weight ``(out, in)`` of the first ``rank`` components."""
        rank = rank or self.rank
        return self.U[:, :rank] @ self.V[:, :rank].T

    def importance(self) -> torch.Tensor:
        """‖u_i‖·‖v_i‖ per component, ``(r,)``."""
        return (self.U.norm(dim=0) * self.V.norm(dim=0)).detach()

    def group_lasso_penalty(self) -> torch.Tensor:
        """Σ_i ‖V[:, i:]‖_F + ‖U[:, i:]‖_F (unweighted), via reversed cumulative sums of column norms²."""
        tail_v = self.V.pow(2).sum(0).flip(0).cumsum(0).flip(0)  # (r,) Σ_{j≥i} ‖v_j‖²
        tail_u = self.U.pow(2).sum(0).flip(0).cumsum(0).flip(0)
        eps = 1e-12  # sqrt'(0) is infinite; a pruned-to-zero tail must not give NaN gradients
        return (tail_v + eps).sqrt().sum() + (tail_u + eps).sqrt().sum()

    def losses(self) -> dict[str, torch.Tensor]:
        """Named, weighted loss terms of this layer (``group_lasso``), empty when λ = 0."""
        if self.config.group_lasso == 0:
            return {}
        return {"group_lasso": self.config.group_lasso * self.group_lasso_penalty()}

    @torch.no_grad()
    def prune(self, tol: float = 1e-5) -> int:
        """Remove components with importance < ``tol`` (at least one is kept); returns the new rank.

        The parameters are replaced by smaller ones, so rebuild the optimizer afterwards.
        """
        keep = (self.importance() >= tol).nonzero().flatten()
        if keep.numel() == 0:
            keep = self.importance().argmax().reshape(1)
        if keep.numel() < self.rank:
            self.U = nn.Parameter(self.U[:, keep].clone())
            self.V = nn.Parameter(self.V[:, keep].clone())
            self.config = self.config.with_overrides({"rank": int(keep.numel())})
        return self.rank

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, rank={self.rank}"


def low_rank_losses(module: nn.Module) -> dict[str, torch.Tensor]:
    """The summed ``group_lasso`` term of every :class:`LowRankLinear` inside ``module`` (empty if none)."""
    terms = [t for m in module.modules() if isinstance(m, LowRankLinear) for t in m.losses().values()]
    return {"group_lasso": torch.stack(terms).sum()} if terms else {}


def prune_low_rank(module: nn.Module, tol: float = 1e-5) -> dict[str, int]:
    """Prune every :class:`LowRankLinear` in ``module``; returns ``{name: new_rank}``."""
    return {name: m.prune(tol) for name, m in module.named_modules() if isinstance(m, LowRankLinear)}


def set_rank_fraction(module: nn.Module, fraction: float | None) -> dict[str, int]:
    """Make every :class:`LowRankLinear` in ``module`` use its first ⌈fraction·rank⌉ components
    (at least 1) in every forward; ``None`` restores the default. Returns ``{name: rank used}``."""
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1] or None, got {fraction}")
    used = {}
    for name, m in module.named_modules():
        if isinstance(m, LowRankLinear):
            m.fixed_rank = None if fraction is None else max(1, math.ceil(fraction * m.rank))
            used[name] = m.fixed_rank or m.rank
    return used


def svd_truncated_copy(module: nn.Module, fraction: float, exclude: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``module`` with every ``nn.Linear`` replaced by its rank-⌈fraction·min(in, out)⌉ truncated
    SVD as a :class:`LowRankLinear` (post-hoc truncation, the usual low-rank baseline). Layers whose
    qualified name is in ``exclude`` stay dense. ``module`` is unchanged."""
    import copy

    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    out = copy.deepcopy(module)
    for name, child in list(out.named_modules()):
        for attr, sub in list(child.named_children()):
            qualified = f"{name}.{attr}" if name else attr
            if isinstance(sub, nn.Linear) and qualified not in exclude:
                rank = max(1, math.ceil(fraction * min(sub.in_features, sub.out_features)))
                setattr(child, attr, LowRankLinear.from_linear(sub, rank=rank, ordered_dropout=False, group_lasso=0.0))
    return out
