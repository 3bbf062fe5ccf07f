"""A synthetic superposition benchmark: activations built from known feature directions.

x = Σ_i a_i f_i (+ noise) with ``n_features`` > ``d`` random unit directions f_i, so features live in
superposition (Elhage et al., "Toy models of superposition", arXiv 2209.10652). Firing is sparse and
Zipf-like (p_i ∝ (i+1)^−α, clipped to [p_min, p_max]), features in a group are correlated through a
shared Gaussian factor (a Gaussian copula), and a small hierarchy makes some features children that
fire only when their parent fires (the setting that produces feature absorption). This follows the
design of SAELens' SynthSAEBench (Chanin & Garriga-Alonso 2026) at CPU scale; the code is ours.

Scores compare a learned dictionary to the ground truth: for each true feature the maximum cosine
with any decoder row; ``mean_max_cos`` averages it and ``recall`` is the share ≥ ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from isthmus.config import Config, ConfigError
from isthmus.train.data import derive_seed

__all__ = ["SuperpositionConfig", "SuperpositionData", "feature_recovery"]


@dataclass
class SuperpositionConfig(Config):
    d: int = 64
    n_features: int = 256
    zipf_exponent: float = 0.5
    p_max: float = 0.1
    p_min: float = 0.005
    group_size: int = 4  # consecutive features share a correlation factor
    correlation: float = 0.3  # copula correlation inside a group (0 = independent)
    n_parents: int = 8  # the first n_parents features each get ``children_per_parent`` children
    children_per_parent: int = 2
    magnitude: tuple[float, float] = (0.5, 1.5)  # uniform range of a firing feature's coefficient
    noise: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        name = type(self).__name__
        if self.n_features < 1 or self.d < 1:
            raise ConfigError(f"{name}: d and n_features must be >= 1")
        if not 0 < self.p_min <= self.p_max <= 1:
            raise ConfigError(f"{name}: need 0 < p_min <= p_max <= 1, got {self.p_min}, {self.p_max}")
        if not 0 <= self.correlation < 1:
            raise ConfigError(f"{name}.correlation must be in [0, 1), got {self.correlation}")
        if self.n_parents * (1 + self.children_per_parent) > self.n_features:
            raise ConfigError(f"{name}: the hierarchy needs n_parents·(1 + children_per_parent) <= n_features")


class SuperpositionData:
    """Ground-truth features ``features`` (n, d), firing probabilities ``p`` (n,) and ``parent`` (n,)
    (−1 for roots). ``sample(n)`` returns activations (n, d) and the true coefficients (n, n_features)."""

    def __init__(self, config: SuperpositionConfig | None = None, **overrides) -> None:
        cfg = config or SuperpositionConfig()
        self.config = cfg = cfg.with_overrides(overrides) if overrides else cfg
        # A derived seed, so the features never coincide with a model initialised by torch.manual_seed(seed).
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, 2209))
        f = torch.randn(cfg.n_features, cfg.d, generator=g)
        self.features = f / f.norm(dim=1, keepdim=True)  # (n, d)
        rank = torch.arange(cfg.n_features, dtype=torch.float64)
        p = (cfg.p_max * (rank + 1) ** -cfg.zipf_exponent).clamp(cfg.p_min, cfg.p_max)
        self.p = p[torch.randperm(cfg.n_features, generator=g)].float()  # frequency not tied to index
        self.parent = torch.full((cfg.n_features,), -1, dtype=torch.long)
        child = cfg.n_parents
        for parent in range(cfg.n_parents):
            for _ in range(cfg.children_per_parent):
                self.parent[child] = parent
                # P(child) = P(parent)·P(child | parent): give children a high conditional rate
                self.p[child] = 0.5
                child += 1
        self._gen = torch.Generator().manual_seed(derive_seed(cfg.seed, 2210))

    @property
    def is_child(self) -> torch.Tensor:
        return self.parent >= 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` activations (n, d) and their true sparse coefficients (n, n_features)."""
        cfg, g = self.config, generator or self._gen
        nf = cfg.n_features
        n_groups = -(-nf // cfg.group_size)
        shared = torch.randn(n, n_groups, generator=g).repeat_interleave(cfg.group_size, 1)[:, :nf]
        own = torch.randn(n, nf, generator=g)
        rho = cfg.correlation
        u = torch.special.ndtr(rho**0.5 * shared + (1 - rho) ** 0.5 * own)  # uniform marginals, correlated
        fire = u < self.p  # (n, nf)
        kids = self.is_child.nonzero().squeeze(1)
        fire[:, kids] &= fire[:, self.parent[kids]]
        lo, hi = cfg.magnitude
        coef = fire * (lo + (hi - lo) * torch.rand(n, nf, generator=g))
        x = coef @ self.features
        if cfg.noise > 0:
            x = x + cfg.noise * torch.randn(n, cfg.d, generator=g)
        return x, coef

    def mean_l0(self, n: int = 4096) -> float:
        _, coef = self.sample(n, torch.Generator().manual_seed(12345))
        return float((coef != 0).sum(1).float().mean())


@torch.no_grad()
def feature_recovery(true_features: torch.Tensor, dictionary: torch.Tensor, threshold: float = 0.9) -> dict[str, float]:
    """Max cosine of each true feature (n, d) with any dictionary row (m, d): mean and recall@threshold."""
    t = true_features / true_features.norm(dim=1, keepdim=True).clamp_min(1e-12)
    w = dictionary / dictionary.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = (t @ w.t()).max(1).values  # (n,)
    return {
        "mean_max_cos": float(best.mean()),
        "recall": float((best >= threshold).float().mean()),
        "threshold": threshold,
    }
