"""Gaussian-process prior over time for latent trajectories, parameterised in the Fourier domain.

Gondur, Sikandar, Schaffer, Aoi & Keeley, "Multi-modal Gaussian Process Variational Autoencoders for
Neural and Behavioral Data", ICLR 2024 (arXiv 2310.03111); the Fourier trick follows Aoi & Pillow's
GP_fourier. Each of the ``latent_dim`` channels is a 1-D time series with an RBF-kernel GP prior of
learnable length-scale ℓ_d (unit marginal variance).

**Shape contract.** The encoder output ``h`` is ``(..., T, 2·latent_dim)`` per time step: the mean and
log-variance of a Gaussian *pseudo-observation* of each channel (same layout as the Gaussian
bottleneck). Leading dims are independent trajectories; a 2-D input ``(T, 2D)`` is *one* trajectory
whose rows are consecutive time steps (so the bottleneck works inside a plain ``AutoEncoder`` fed
unshuffled, time-ordered batches). The latent is ``(..., T, D)``.

**Priors** (``domain``):

* ``"fourier"`` (the paper): the trajectory lives on a circle of ``N = T + pad`` steps and is
  ``z = B c`` with the real orthonormal Fourier basis ``B`` (T, M) restricted to the first T steps,
  frequencies pruned where the RBF spectral density falls below ``1/cond_thresh`` of its peak at the
  shortest allowed length-scale. The prior on ``c`` is diagonal, ``c_m ~ N(0, S(ω_m; ℓ) + jitter)``
  with ``S(ω) = √(2π) ℓ exp(-ω²ℓ²/2)``. The posterior over ``c`` is the exact Gaussian posterior given
  the per-step pseudo-observations (precision ``diag(1/S) + Bᵀ diag(1/σ²) B``, one M×M Cholesky per
  trajectory and channel; our choice of how the per-step encoder outputs enter the Fourier domain), so
  high frequencies stay at the prior and the trajectory is smooth. KL(q(c) ‖ p(c)) is closed-form and
  cheap because the prior is diagonal.
* ``"time"``: the standard time-domain GP-VAE (the paper's baseline): mean-field posterior
  N(μ_t, σ²_t) per step, KL to N(0, K_ℓ) with the T×T RBF covariance (Cholesky).
* ``"time_exact"``: the time-domain prior N(0, K_ℓ) with the *same posterior family* as ``"fourier"``:
  the exact Gaussian posterior given the per-step pseudo-observations (a GP smoother of the encoder
  outputs, T×T per trajectory and channel). Comparing it with ``"fourier"`` isolates the
  parameterisation (circulant Fourier basis with pruned frequencies vs the exact time-domain kernel).
* ``"iid"``: N(0, 1) at every step independently (a plain VAE per frame).

``losses["kl"]`` is β · KL per time step (the trajectory's KL summed over channels, divided by T,
averaged over trajectories), on the scale of per-frame reconstruction losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from isthmus.bottlenecks.base import BOTTLENECKS, Bottleneck, BottleneckConfig, BottleneckOutput
from isthmus.config import ConfigError

__all__ = [
    "GPPriorConfig",
    "GPPriorBottleneck",
    "GPPosterior",
    "fourier_basis",
    "rbf_spectral_density",
    "rbf_covariance",
]


@dataclass
class GPPriorConfig(BottleneckConfig):
    """``lengthscale``: initial RBF length-scale in time steps (learned when ``learn_lengthscale``).

    ``min_lengthscale`` sets the frequency cut-off (Fourier domain); ``pad`` the circular padding in
    units of the initial length-scale (the wrap-around correlation is then negligible).
    """

    domain: Literal["fourier", "time", "time_exact", "iid"] = "fourier"
    lengthscale: float = 10.0
    learn_lengthscale: bool = True
    min_lengthscale: float = 3.0
    pad: float = 3.0
    cond_thresh: float = 1e8
    beta: float = 1.0
    logvar_clamp: float = 12.0
    jitter: float = 1e-4

    def validate(self) -> None:
        super().validate()
        if self.lengthscale <= 0 or self.min_lengthscale <= 0:
            raise ConfigError(
                f"GPPriorConfig: lengthscale and min_lengthscale must be > 0, got "
                f"{self.lengthscale}, {self.min_lengthscale}"
            )
        if self.pad < 0 or self.beta < 0:
            raise ConfigError(f"GPPriorConfig: pad and beta must be >= 0, got {self.pad}, {self.beta}")
        if self.cond_thresh <= 1:
            raise ConfigError(f"GPPriorConfig.cond_thresh must be > 1, got {self.cond_thresh}")


def fourier_basis(T: int, n_circ: int, max_freq: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Real orthonormal Fourier basis on ``n_circ`` points, first ``T`` rows: ``(B (T, M), ω (M,))``.

    Columns: the constant, then cos/sin pairs at ω_k = 2πk/n_circ for 1 ≤ k < n_circ/2 with ω_k ≤ max_freq.
    """
    n = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    k_max = min(int(math.floor(max_freq * n_circ / (2 * math.pi))), (n_circ - 1) // 2)
    k = torch.arange(1, k_max + 1, dtype=torch.float64)  # (K,)
    w = 2 * math.pi * k / n_circ
    cols = [torch.full((T, 1), 1.0 / math.sqrt(n_circ), dtype=torch.float64)]
    if k_max > 0:
        scale = math.sqrt(2.0 / n_circ)
        cols += [scale * torch.cos(n * w), scale * torch.sin(n * w)]
    omega = torch.cat([torch.zeros(1, dtype=torch.float64), w, w])[: 1 + 2 * k_max]
    return torch.cat(cols, dim=1).float(), omega.float()


def rbf_spectral_density(omega: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """Spectral density of the unit-variance RBF kernel, ``(D, M)`` for ℓ ``(D,)`` and ω ``(M,)``."""
    ell = lengthscale[:, None]
    return math.sqrt(2 * math.pi) * ell * torch.exp(-0.5 * (omega[None, :] * ell) ** 2)


def rbf_covariance(T: int, lengthscale: torch.Tensor, jitter: float = 1e-4) -> torch.Tensor:
    """RBF covariance ``(D, T, T)`` over steps 0..T-1, unit variance, with ``jitter`` on the diagonal."""
    t = torch.arange(T, dtype=lengthscale.dtype, device=lengthscale.device)
    d2 = (t[:, None] - t[None, :]) ** 2  # (T, T)
    K = torch.exp(-0.5 * d2[None] / lengthscale[:, None, None] ** 2)
    return K + jitter * torch.eye(T, dtype=K.dtype, device=K.device)


@dataclass
class GPPosterior:
    """Posterior over trajectories, time domain. All ``(..., T, D)`` except ``kl`` ``(..., D)``."""

    mean: torch.Tensor  # E[z_t]
    var: torch.Tensor  # Var[z_t] (marginal; used by closed-form Poisson likelihoods)
    sample: torch.Tensor  # a reparameterised draw (training) or the mean (eval)
    kl: torch.Tensor  # KL(q ‖ p) per trajectory and channel, nats


@BOTTLENECKS.register("gp_prior", GPPriorConfig)
class GPPriorBottleneck(Bottleneck):
    """GP prior over time (RBF, learnable ℓ per channel) with a Fourier-domain posterior. See the module doc."""

    config: GPPriorConfig
    log_lengthscale: torch.Tensor  # a Parameter when learned, else a buffer

    def __init__(self, config: GPPriorConfig | None = None) -> None:
        super().__init__(config or GPPriorConfig())
        cfg = self.config
        log_ell = torch.full((cfg.latent_dim,), math.log(cfg.lengthscale))
        if cfg.learn_lengthscale:
            self.log_lengthscale = nn.Parameter(log_ell)
        else:
            self.register_buffer("log_lengthscale", log_ell)
        self._basis_cache: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def in_features(self) -> int:
        return 2 * self.config.latent_dim

    @property
    def lengthscale(self) -> torch.Tensor:
        """Current length-scales, ``(D,)`` in time steps."""
        return self.log_lengthscale.exp()

    def check_input(self, h: torch.Tensor) -> None:
        if h.dim() < 2 or h.shape[-1] != self.in_features:
            raise ValueError(
                f"GPPriorBottleneck expects (..., T, {self.in_features}) (a 2-D input is one trajectory), "
                f"got {tuple(h.shape)}"
            )

    def basis(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The (cached) Fourier basis ``(T, M)`` and frequencies ``(M,)`` for trajectories of length T."""
        key = (T, str(device))
        if key not in self._basis_cache:
            cfg = self.config
            n_circ = T + int(math.ceil(cfg.pad * cfg.lengthscale))
            max_freq = math.sqrt(2 * math.log(cfg.cond_thresh)) / cfg.min_lengthscale
            B, w = fourier_basis(T, n_circ, max_freq)
            self._basis_cache[key] = (B.to(device), w.to(device))
        return self._basis_cache[key]

    # ---- posteriors --------------------------------------------------------------------------
    def pseudo_observations(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step mean and clamped log-variance, ``(..., T, D)`` each."""
        self.check_input(h)
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar.clamp(-self.config.logvar_clamp, self.config.logvar_clamp)

    def infer(self, h: torch.Tensor) -> GPPosterior:
        """The posterior for encoder output ``h`` ``(..., T, 2D)``; samples only in training mode."""
        mu, logvar = self.pseudo_observations(h)
        domain = self.config.domain
        if domain == "fourier":
            return self._fourier(mu, logvar)
        if domain == "time_exact":
            return self._time_exact(mu, logvar)
        var = logvar.exp()
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        if domain == "time":
            kl = self._time_kl(mu, var, logvar)
        else:
            kl = (0.5 * (mu.pow(2) + var - 1.0 - logvar)).sum(-2)
        return GPPosterior(mean=mu, var=var, sample=z, kl=kl)

    def _fourier(self, mu: torch.Tensor, logvar: torch.Tensor) -> GPPosterior:
        """Exact Gaussian posterior over the Fourier coefficients given the per-step pseudo-observations."""
        B, omega = self.basis(mu.shape[-2], mu.device)  # (T, M), (M,)
        # + jitter: the spectrum of K + jitter·I (white noise is flat), keeps pruned-in tails finite.
        s = rbf_spectral_density(omega, self.lengthscale) + self.config.jitter  # (D, M) prior variances
        w = (-logvar).exp().transpose(-1, -2)  # (..., D, T) pseudo-observation precisions
        # Posterior precision P = diag(1/s) + Bᵀ diag(w) B, (..., D, M, M); mean P⁻¹ Bᵀ (w μ).
        P = B.T @ (w.unsqueeze(-1) * B) + torch.diag_embed(1.0 / s)
        L = torch.linalg.cholesky(P)
        rhs = torch.einsum("tm,...dt->...dm", B, w * mu.transpose(-1, -2))
        m = torch.cholesky_solve(rhs.unsqueeze(-1), L).squeeze(-1)  # (..., D, M)
        eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
        L_inv = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False)  # P⁻¹ = L_invᵀ L_inv
        logdet_p = 2 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)  # (..., D)
        kl = 0.5 * ((L_inv.pow(2).sum(-2) + m.pow(2)) / s - 1.0 + torch.log(s)).sum(-1) + 0.5 * logdet_p
        if self.training:
            c = m + (L_inv.transpose(-1, -2) @ torch.randn_like(m).unsqueeze(-1)).squeeze(-1)
        else:
            c = m
        var = (L_inv @ B.T).pow(2).sum(-2)  # diag(B P⁻¹ Bᵀ), (..., D, T)
        to_time = lambda a: torch.einsum("tm,...dm->...td", B, a)  # noqa: E731
        return GPPosterior(mean=to_time(m), var=var.transpose(-1, -2), sample=to_time(c), kl=kl)

    def _time_exact(self, mu: torch.Tensor, logvar: torch.Tensor) -> GPPosterior:
        """Exact Gaussian posterior under N(0, K) given pseudo-observations μ_t with noise σ²_t, per channel.

        With A = K + diag(σ²): mean K A⁻¹ μ, covariance Σ = K − K A⁻¹ K, and
        KL(N(m, Σ) ‖ N(0, K)) = ½[mᵀK⁻¹m − tr(A⁻¹K) + log|A| − Σ_t log σ²_t]. Samples by Matheron's rule
        (prior draw f, noise ε: z = f + K A⁻¹(μ − f − ε)), which needs no Cholesky of the ill-conditioned Σ.
        """
        T = mu.shape[-2]
        K = rbf_covariance(T, self.lengthscale, self.config.jitter)  # (D, T, T)
        y, var = mu.transpose(-1, -2), logvar.exp().transpose(-1, -2)  # (..., D, T)
        L = torch.linalg.cholesky(K + torch.diag_embed(var))  # (..., D, T, T)
        a_inv_y = torch.cholesky_solve(y.unsqueeze(-1), L)  # (..., D, T, 1)
        m = (K @ a_inv_y).squeeze(-1)  # (..., D, T)
        Linv_K = torch.linalg.solve_triangular(L, K.expand_as(L), upper=False)  # L⁻¹K
        tr = torch.cholesky_solve(K.expand_as(L), L).diagonal(dim1=-2, dim2=-1).sum(-1)  # tr(A⁻¹K)
        quad = (a_inv_y.squeeze(-1) * m).sum(-1)  # (A⁻¹μ)ᵀ K (A⁻¹μ) = mᵀK⁻¹m
        logdet_a = 2 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)
        kl = 0.5 * (quad - tr + logdet_a - logvar.transpose(-1, -2).sum(-1))  # (..., D)
        marg = (K.diagonal(dim1=-2, dim2=-1) - Linv_K.pow(2).sum(-2)).clamp_min(1e-8)  # diag Σ
        if self.training:
            Lk = torch.linalg.cholesky(K)
            f = (Lk @ torch.randn_like(y).unsqueeze(-1)).squeeze(-1)
            eps = torch.randn_like(y) * var.sqrt()
            z = f + (K @ torch.cholesky_solve((y - f - eps).unsqueeze(-1), L)).squeeze(-1)
        else:
            z = m
        return GPPosterior(mean=m.transpose(-1, -2), var=marg.transpose(-1, -2), sample=z.transpose(-1, -2), kl=kl)

    def _time_kl(self, mu: torch.Tensor, var: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(∏_t N(μ_t, σ²_t) ‖ N(0, K_ℓ)) per trajectory and channel, ``(..., D)``."""
        T, D = mu.shape[-2], mu.shape[-1]
        lead = mu.shape[:-2]
        L = torch.linalg.cholesky(rbf_covariance(T, self.lengthscale, self.config.jitter))  # (D, T, T)
        mu_f = mu.reshape(-1, T, D).permute(2, 1, 0)  # (D, T, N)
        var_f = var.reshape(-1, T, D).permute(2, 1, 0)
        sol = torch.cholesky_solve(mu_f, L)  # K⁻¹ μ
        quad = (mu_f * sol).sum(1)  # (D, N)
        eye = torch.eye(T, dtype=mu.dtype, device=mu.device).expand(D, T, T)
        k_inv_diag = torch.cholesky_solve(eye, L).diagonal(dim1=-2, dim2=-1)  # (D, T)
        trace = (k_inv_diag[:, :, None] * var_f).sum(1)  # (D, N)
        logdet = 2 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)  # (D,)
        kl = 0.5 * (trace + quad - T + logdet[:, None] - logvar.reshape(-1, T, D).permute(2, 1, 0).sum(1))
        return kl.T.reshape(*lead, D)

    # ---- bottleneck API ----------------------------------------------------------------------
    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        post = self.infer(h)
        T = h.shape[-2]
        kl_dim = post.kl.reshape(-1, self.config.latent_dim).mean(0) / T  # (D,) per time step
        kl = kl_dim.sum()
        return BottleneckOutput(
            latent=post.sample,
            codes=post.mean,
            losses={"kl": self.config.beta * kl},
            stats={"kl": kl.detach(), "kl_per_dim": kl_dim.detach(), "lengthscale": self.lengthscale.detach()},
        )

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One trajectory of ``n`` time steps from the GP prior, ``(n, D)`` (rows are time, as in the 2-D contract)."""
        D = self.config.latent_dim
        with torch.no_grad():
            if self.config.domain == "iid":
                return torch.randn(n, D, generator=generator)
            L = torch.linalg.cholesky(rbf_covariance(n, self.lengthscale.detach().cpu(), self.config.jitter))
            return torch.einsum("dts,sd->td", L, torch.randn(n, D, generator=generator))
