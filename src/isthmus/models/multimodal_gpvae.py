"""Multi-modal GP-VAE: images per time step + Poisson spike counts, shared and private GP latents.

Gondur et al., ICLR 2024 (arXiv 2310.03111). Latent channels are ordered ``[shared (S) | image (I) |
neural (N)]``, each a 1-D trajectory under the GP prior of :class:`GPPriorBottleneck` (Fourier domain by
default; ``gp_domain="time"`` / ``"iid"`` give the time-domain GP-VAE and plain-VAE baselines).

* Image encoder: MLP per frame → pseudo-observations (mean, log-variance) of the shared + image channels.
* Spike encoder: MLP per time bin on log(1 + counts) → shared + neural channels.
* Fusion: the shared channels' mean and log-variance are the **average** of the two encoders' (paper).
* Image decoder: MLP from (shared + image) latents → pixels in [0, 1] (sigmoid); Gaussian NLL with a
  fixed noise std ``image_sigma`` (constant dropped) or Bernoulli (BCE).
* Spike decoder: GPFA-style linear-exponential Poisson readout, log-rate η = W·[shared, neural] + b,
  closed-form expected log-likelihood with E[exp η] = exp(μ_η + ½ Var η) (log y! dropped).

``modalities="image"`` / ``"neural"`` builds the unimodal models (baselines): only that encoder and
decoder, latents shared + that modality's private ones. A batch is ``(images, spikes)`` with images
``(B, T, P)`` or ``(B, T, H, W)`` and spikes ``(B, T, n_neurons)``; the unused modality may be ``None``.
Loss terms (per time step, averaged over trials): ``image``, ``spikes``, ``kl``.
Saved as ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.bottlenecks.gp_prior import GPPosterior, GPPriorBottleneck, GPPriorConfig
from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.nn import MLP, MLPConfig

__all__ = ["MultimodalGPVAEConfig", "MultimodalGPVAE"]


@dataclass
class MultimodalGPVAEConfig(Config):
    image_dim: int = 256
    n_neurons: int = 100
    n_shared: int = 1
    n_image: int = 1
    n_neural: int = 1
    modalities: Literal["both", "image", "neural"] = "both"
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    image_loss: Literal["gaussian", "bce"] = "gaussian"
    image_sigma: float = 0.1
    gp_domain: Literal["fourier", "time", "time_exact", "iid"] = "fourier"
    lengthscale: float = 10.0
    learn_lengthscale: bool = True
    min_lengthscale: float = 3.0
    beta: float = 1.0

    def validate(self) -> None:
        if min(self.image_dim, self.n_neurons) < 1 or min(self.n_shared, self.n_image, self.n_neural) < 0:
            raise ConfigError("MultimodalGPVAEConfig: image_dim, n_neurons >= 1 and latent counts >= 0 required")
        if self.image_sigma <= 0:
            raise ConfigError(f"MultimodalGPVAEConfig.image_sigma must be > 0, got {self.image_sigma}")
        if self.latent_dim < 1:
            raise ConfigError(f"MultimodalGPVAEConfig: the {self.modalities!r} model has no latent channel")

    @property
    def uses_image(self) -> bool:
        return self.modalities in ("both", "image")

    @property
    def uses_neural(self) -> bool:
        return self.modalities in ("both", "neural")

    @property
    def groups(self) -> dict[str, int]:
        """Latent groups in channel order, with their sizes (absent modality's group dropped)."""
        g = {"shared": self.n_shared}
        if self.uses_image:
            g["image"] = self.n_image
        if self.uses_neural:
            g["neural"] = self.n_neural
        return {k: v for k, v in g.items() if v > 0}

    @property
    def latent_dim(self) -> int:
        return sum(self.groups.values())


def _per_step(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame network to ``(B, T, F)``: fold time into the batch and back."""
    return net(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


class MultimodalGPVAE(Pretrained, nn.Module):
    """Two encoders, posterior-averaged shared latents, GP prior over time, image + Poisson decoders."""

    config_class = MultimodalGPVAEConfig  # save_pretrained/from_pretrained: see isthmus.io.Pretrained

    def __init__(self, config: MultimodalGPVAEConfig | dict | None = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, MultimodalGPVAEConfig) else MultimodalGPVAEConfig.from_dict(config or {})
        self.config = cfg
        S, I, N = cfg.n_shared, cfg.n_image, cfg.n_neural
        hid = list(cfg.hidden)
        self.bottleneck = GPPriorBottleneck(
            GPPriorConfig(
                latent_dim=cfg.latent_dim,
                domain=cfg.gp_domain,
                lengthscale=cfg.lengthscale,
                learn_lengthscale=cfg.learn_lengthscale,
                min_lengthscale=cfg.min_lengthscale,
                beta=cfg.beta,
            )
        )
        if cfg.uses_image:
            self.image_encoder = MLP(
                MLPConfig(in_dim=cfg.image_dim, out_dim=2 * (S + I), hidden=hid, activation="gelu")
            )
            self.image_decoder = MLP(
                MLPConfig(
                    in_dim=S + I, out_dim=cfg.image_dim, hidden=hid[::-1], activation="gelu", out_activation="identity"
                )
            )
        if cfg.uses_neural:
            self.spike_encoder = MLP(
                MLPConfig(in_dim=cfg.n_neurons, out_dim=2 * (S + N), hidden=hid, activation="gelu")
            )
            self.spike_readout = nn.Linear(S + N, cfg.n_neurons)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, size in self.config.groups.items():
            out[name] = slice(start, start + size)
            start += size
        return out

    # ---- encoding ----------------------------------------------------------------------------
    def _pseudo_obs(self, images: torch.Tensor | None, spikes: torch.Tensor | None) -> torch.Tensor:
        """Fused per-step pseudo-observations ``(B, T, 2D)`` in the channel order of :attr:`groups`."""
        cfg = self.config
        S, I, N = cfg.n_shared, cfg.n_image, cfg.n_neural
        parts_mu: list[torch.Tensor] = []
        parts_lv: list[torch.Tensor] = []
        img = spk = None
        if cfg.uses_image:
            if images is None:
                raise ValueError("this model reads images; pass (images, spikes)")
            img = _per_step(self.image_encoder, images).chunk(2, dim=-1)  # mean, logvar (B, T, S+I)
        if cfg.uses_neural:
            if spikes is None:
                raise ValueError("this model reads spike counts; pass (images, spikes)")
            spk = _per_step(self.spike_encoder, torch.log1p(spikes)).chunk(2, dim=-1)  # (B, T, S+N)
        for k in range(2):  # 0: mean, 1: log-variance
            srcs = [x[k][..., :S] for x in (img, spk) if x is not None]
            parts = [cast(torch.Tensor, sum(srcs)) / len(srcs)]  # shared: the average of the encoders' (paper)
            if img is not None:
                parts.append(img[k][..., S : S + I])
            if spk is not None:
                parts.append(spk[k][..., S : S + N])
            (parts_mu if k == 0 else parts_lv).append(torch.cat(parts, dim=-1))
        return torch.cat(parts_mu + parts_lv, dim=-1)

    def posterior(self, images: torch.Tensor | None, spikes: torch.Tensor | None) -> GPPosterior:
        images, spikes = self._prepare(images, spikes)
        return self.bottleneck.infer(self._pseudo_obs(images, spikes))

    @torch.no_grad()
    def encode(self, images: torch.Tensor | None, spikes: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Posterior-mean trajectories per group, ``{"shared": (B, T, S), "image": ..., "neural": ...}``."""
        was = self.training
        self.eval()
        try:
            mean = self.posterior(images, spikes).mean
        finally:
            self.train(was)
        return {name: mean[..., sl] for name, sl in self._slices().items()}

    # ---- decoding ----------------------------------------------------------------------------
    def _take(self, z: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        sl = self._slices()
        return torch.cat([z[..., sl[n]] for n in names if n in sl], dim=-1)

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1], ``(B, T, P)``, from the full latent ``(B, T, D)``."""
        return torch.sigmoid(_per_step(self.image_decoder, self._take(z, ("shared", "image"))))

    def log_rate_moments(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the log-rate η = W z + b under the posterior, ``(B, T, n_neurons)`` each."""
        keep = ("shared", "neural")
        W = self.spike_readout.weight  # (n_neurons, S+N)
        return self.spike_readout(self._take(mean, keep)), self._take(var, keep) @ (W * W).T

    @torch.no_grad()
    def predict_rates(self, images: torch.Tensor | None, spikes: torch.Tensor | None) -> torch.Tensor:
        """Expected firing rates E[exp η] per bin, ``(B, T, n_neurons)``."""
        was = self.training
        self.eval()
        try:
            post = self.posterior(images, spikes)
            eta_mu, eta_var = self.log_rate_moments(post.mean, post.var)
        finally:
            self.train(was)
        return torch.exp(eta_mu + 0.5 * eta_var)

    # ---- objective ---------------------------------------------------------------------------
    def _prepare(self, images, spikes):
        if images is not None:
            images = images.reshape(*images.shape[:2], -1).float()  # (B, T, P)
        if spikes is not None:
            spikes = spikes.float()
        return images, spikes

    def forward(self, images: torch.Tensor | None, spikes: torch.Tensor | None) -> ModelOutput:
        images, spikes = self._prepare(images, spikes)
        post = self.bottleneck.infer(self._pseudo_obs(images, spikes))
        B, T = post.mean.shape[:2]
        losses: dict[str, torch.Tensor] = {}
        recon = None
        if self.config.uses_image:
            recon = self.decode_images(post.sample)
            if self.config.image_loss == "bce":
                nll = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), images, reduction="sum")
            else:
                nll = 0.5 * (recon - images).pow(2).sum() / self.config.image_sigma**2
            losses["image"] = nll / (B * T)
        if self.config.uses_neural:
            eta_mu, eta_var = self.log_rate_moments(post.mean, post.var)
            nll = (torch.exp(eta_mu + 0.5 * eta_var) - spikes * eta_mu).sum()
            losses["spikes"] = nll / (B * T)
        losses["kl"] = self.config.beta * post.kl.sum() / (B * T)
        stats: dict[str, torch.Tensor | float] = {
            "kl": losses["kl"].detach() / max(self.config.beta, 1e-12),
            "lengthscale": self.bottleneck.lengthscale.detach(),
        }
        total = cast(torch.Tensor, sum(losses.values()))  # never empty: "kl" is always a term
        return ModelOutput(loss=total, losses=losses, recon=recon, latent=post.sample, codes=post.mean, stats=stats)

    def compute_loss(self, batch: Any) -> ModelOutput:
        """The Trainer's entry point: ``batch`` is ``(images, spikes)``."""
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError("MultimodalGPVAE trains on (images, spikes) batches")
        return self(batch[0], batch[1])

    def set_step(self, step: int) -> None:
        self.bottleneck.set_step(step)
