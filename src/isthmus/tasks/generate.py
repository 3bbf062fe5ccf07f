"""Two-stage generation: fit an autoencoder, encode the data, fit a prior over the latents, sample and decode.

:class:`TwoStageGenerator` holds both stages. Priors: ``"flow_matching"`` (:class:`FlowMatchingPrior`),
``"flow"`` (:class:`AutoregressiveFlow`, exact likelihood) and ``"gaussian"`` (a full-covariance Gaussian
fitted to the latents: the baseline every learned prior must beat). Latents are standardised per
dimension before the prior sees them (the statistics are saved with the model), because priors are
tuned for unit-scale inputs while an autoencoder's latent scale is arbitrary.

A saved generator is a folder: ``autoencoder/`` and ``prior/`` (``config.json`` + safetensors, the
shared format) and ``generator.json`` (prior kind, latent statistics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from isthmus.io import atomic_write_json, read_json, save_tensors
from isthmus.models import AutoEncoder
from isthmus.models.diffusion import FlowMatchingConfig, FlowMatchingPrior
from isthmus.models.flows import AutoregressiveFlow, FlowConfig
from isthmus.train import Trainer, TrainerConfig

__all__ = ["TwoStageGenerator", "PRIORS"]

PRIORS = ("flow_matching", "flow", "gaussian")


class TwoStageGenerator:
    def __init__(
        self,
        autoencoder: AutoEncoder,
        prior: Literal["flow_matching", "flow", "gaussian"] = "flow_matching",
        prior_options: dict[str, Any] | None = None,
    ) -> None:
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        self.autoencoder = autoencoder
        self.prior_kind = prior
        self.prior_options = dict(prior_options or {})
        self.prior: FlowMatchingPrior | AutoregressiveFlow | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.chol: torch.Tensor | None = None  # the Gaussian prior's Cholesky factor

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        self.autoencoder.eval()
        return torch.cat([self.autoencoder.encode(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def fit(
        self,
        x: torch.Tensor,
        autoencoder_trainer: TrainerConfig | None = None,
        prior_trainer: TrainerConfig | None = None,
    ) -> "TwoStageGenerator":
        """Train the autoencoder (skip with ``autoencoder_trainer=None`` for a trained one), then the prior."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if not torch.isfinite(x).all():
            raise ValueError("training data holds NaN or inf")
        if autoencoder_trainer is not None:
            Trainer(self.autoencoder, autoencoder_trainer).fit(x)
        z = self.encode(x)
        self.mean, self.std = z.mean(0), z.std(0).clamp_min(1e-6)
        u = (z - self.mean) / self.std
        d = u.shape[1]
        if self.prior_kind == "gaussian":
            cov = torch.cov(u.T) + 1e-5 * torch.eye(d)
            self.chol = torch.linalg.cholesky(cov)
            return self
        if self.prior_kind == "flow_matching":
            self.prior = FlowMatchingPrior(FlowMatchingConfig(dim=d, **self.prior_options))
        else:
            self.prior = AutoregressiveFlow(FlowConfig(dim=d, **self.prior_options))
        Trainer(self.prior, prior_trainer or TrainerConfig(epochs=50, batch_size=256, lr=1e-3, progress=False)).fit(u)
        self.prior.eval()
        return self

    @torch.no_grad()
    def sample_latents(self, n: int, seed: int = 0) -> torch.Tensor:
        if self.mean is None or self.std is None:  # fit sets both
            raise RuntimeError("call fit() before sampling")
        g = torch.Generator().manual_seed(seed)
        if self.prior_kind == "gaussian":
            assert self.chol is not None  # fit sets it for the Gaussian prior
            u = torch.randn(n, len(self.mean), generator=g) @ self.chol.T
        else:
            assert self.prior is not None  # fit trains it for the other priors
            u = self.prior.sample(n, generator=g)
        return u * self.std + self.mean

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` decoded samples; the same ``seed`` gives the same samples."""
        self.autoencoder.eval()
        return self.autoencoder.decode(self.sample_latents(n, seed))

    # ---- save / load ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        if self.mean is None or self.std is None:  # fit sets both
            raise RuntimeError("nothing to save: call fit() first")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.autoencoder.save_pretrained(path / "autoencoder")
        if self.prior is not None:
            self.prior.save_pretrained(path / "prior")
        stats = {"mean": self.mean, "std": self.std}
        if self.chol is not None:
            stats["chol"] = self.chol
        save_tensors(path / "latent_stats.safetensors", stats)
        atomic_write_json(path / "generator.json", {"prior": self.prior_kind, "prior_options": self.prior_options})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TwoStageGenerator":
        from safetensors.torch import load_file

        path = Path(path)
        meta = read_json(path / "generator.json")
        gen = cls(AutoEncoder.from_pretrained(path / "autoencoder"), meta["prior"], meta.get("prior_options"))
        stats = load_file(str(path / "latent_stats.safetensors"))
        gen.mean, gen.std, gen.chol = stats["mean"], stats["std"], stats.get("chol")
        if gen.prior_kind == "flow_matching":
            gen.prior = FlowMatchingPrior.from_pretrained(path / "prior")
        elif gen.prior_kind == "flow":
            gen.prior = AutoregressiveFlow.from_pretrained(path / "prior")
        return gen
