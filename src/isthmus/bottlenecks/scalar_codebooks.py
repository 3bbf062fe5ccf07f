"""Per-dimension scalar codebooks: the latent quantization of QLAE.

Hsu, Dorrell, Whittington, Wu, Finn, "Disentanglement via Latent Quantization" (arXiv 2305.18378).
Each latent dimension j owns a learnable set of ``n_values`` scalars (initialised ``linspace(low, high)``);
the encoder output of dimension j snaps to the nearest of *its own* values, and the decoder sees the
result through a straight-through estimator ``z + sg(z_q - z)``. Two weighted terms train it:

* ``quantization`` = λ_q ‖sg(z) − z_q‖²  — moves the codebook values toward the encodings,
* ``commitment``   = λ_c ‖z − sg(z_q)‖²  — keeps the encodings near their values.

**Train it with high AdamW weight decay** (the paper uses 0.1, "unusually high"): decay on the encoder
and decoder is what pushes each factor of variation into few dimensions; without it quantization alone
gave much weaker disentanglement in the paper's ablations. ``shared=True`` is the paper's ablation with one
global codebook used by every dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.bottlenecks.codebook_stats import codebook_stats
from isthmus.config import ConfigError

__all__ = ["ScalarCodebooksConfig", "ScalarCodebooksBottleneck"]


@dataclass
class ScalarCodebooksConfig(BottleneckConfig):
    """Defaults follow the paper's released configs (10 values in [-0.5, 0.5], both weights 0.01)."""

    n_values: int = 10
    low: float = -0.5
    high: float = 0.5
    quantization_weight: float = 0.01
    commitment_weight: float = 0.01
    shared: bool = False  # one global codebook for all dimensions (ablation)

    def validate(self) -> None:
        super().validate()
        if self.n_values < 2:
            raise ConfigError(f"ScalarCodebooksConfig.n_values must be >= 2, got {self.n_values}")
        if not self.low < self.high:
            raise ConfigError(f"ScalarCodebooksConfig.low must be < high, got low={self.low}, high={self.high}")
        for name in ("quantization_weight", "commitment_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ScalarCodebooksConfig.{name} must be >= 0, got {getattr(self, name)}")


@BOTTLENECKS.register("scalar_codebooks", ScalarCodebooksConfig)
class ScalarCodebooksBottleneck(Bottleneck):
    """QLAE latent. ``values``: (D, n_values) Parameter, or (1, n_values) when shared.

    ``codes``: the index of each dimension's value (B, D); latent: the snapped values (B, D).
    """

    config: ScalarCodebooksConfig

    def __init__(self, config: ScalarCodebooksConfig | None = None) -> None:
        super().__init__(config or ScalarCodebooksConfig())
        cfg = self.config
        rows = 1 if cfg.shared else cfg.latent_dim
        self.values = nn.Parameter(torch.linspace(cfg.low, cfg.high, cfg.n_values).repeat(rows, 1))  # (D, n)

    def codebook(self) -> torch.Tensor:
        """The values each dimension can snap to, (D, n_values) (rows equal when shared)."""
        return self.values.expand(self.config.latent_dim, -1)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest value per dimension: returns z_q (B, D) (with gradient to the values) and indices (B, D)."""
        book = self.codebook()  # (D, n)
        with torch.no_grad():
            idx = (z[:, :, None] - book[None]).abs().argmin(-1)  # (B, D)
        z_q = torch.gather(book.expand(z.shape[0], -1, -1), 2, idx[:, :, None]).squeeze(2)  # (B, D)
        return z_q, idx

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        self.check_input(h)
        cfg = self.config
        z_q, idx = self.quantize(h)
        latent = h + (z_q - h).detach()  # straight-through
        raw = {"quantization": F.mse_loss(z_q, h.detach()), "commitment": F.mse_loss(h, z_q.detach())}
        weights = {"quantization": cfg.quantization_weight, "commitment": cfg.commitment_weight}
        losses = {k: weights[k] * v for k, v in raw.items() if weights[k] > 0}
        stats: dict[str, torch.Tensor | float] = dict(
            codebook_stats(idx, cfg.n_values, separate_codebooks=not cfg.shared)
        )
        stats["quantization_error"] = raw["commitment"].detach()
        return BottleneckOutput(latent=latent, codes=idx, losses=losses, stats=stats)
