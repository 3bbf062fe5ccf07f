"""Retinex deep unfolding (CUE, Zheng et al. ICCV 2023, ``zheng980629/CUE``), small.

Model: a low-light image is ``I = R ⊙ L + N`` (reflectance R with C channels, illumination L with
one, noise N). :meth:`RetinexUnfolding.decompose` initialises ``L₀ = max_c I``, ``R₀ = I / (L₀ + ε)``,
``N₀ = 0`` and runs ``stages − 1`` updates with modules **shared across stages** (as the authors' code):

* illumination: a gradient step on ½‖I − R⊙L − N‖², ``L̂ = mean_c[(1 − αR²)L − αR(N − I)]``, then
  either ``L = L̂ + head(prior.features(L̂))`` (``illumination="prior"``: a U-Net illumination prior
  whose features condition a Conv-ReLU-Conv-ReLU-Conv-Sigmoid head, the "structure flow") or
  ``L = L̂ + prox_L(L̂)`` (``"prox"``: a generic proximal CNN, the paper's ablation);
* reflectance: ``R̂ = (1 − βL²)R − βL(N − I)``, ``R = R̂ + prox_R(R̂)``;
* noise: ``N̂ = soft(I − R⊙L, 1/μ)`` (μ learnable), ``N = N̂ + prox_N(N̂)``.

Enhancement: an adjustment net maps ``[L, ratio]`` to a normal-light illumination ``L_high`` and a
restoration U-Net maps R to ``R_restored``; the output is ``L_high ⊙ R_restored``. α = β = 0.001,
μ₀ = 10 and ratio 5 are the authors' values. With every learned correction at zero the updates are
exactly the closed-form steps (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.nn.unet import UNet, UNetConfig

__all__ = ["RetinexUnfoldingConfig", "RetinexUnfolding", "UnfoldingOutput", "soft_threshold", "ProxNet"]

EPS = 1e-4


def soft_threshold(x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    return torch.sign(x) * torch.relu(x.abs() - t)


@dataclass
class RetinexUnfoldingConfig(Config):
    channels: int = 3
    width: int = 8  # proximal nets
    stages: int = 3  # the authors' `stage: 3` = initialisation + 2 updates
    alpha: float = 1e-3
    beta: float = 1e-3
    mu_init: float = 10.0
    illumination: Literal["prior", "prox"] = "prior"
    prior_channels: list[int] = field(default_factory=lambda: [6, 12])  # the illumination-prior U-Net
    prox_l_width: int = 8  # the generic prox_L (widen it to match the prior's parameters)
    ratio: float = 5.0
    enhance_channels: list[int] = field(default_factory=lambda: [8, 16])

    def validate(self) -> None:
        name = type(self).__name__
        if self.stages < 1 or self.width < 1 or self.prox_l_width < 1 or self.channels < 1:
            raise ConfigError(f"{name}: stages, width, prox_l_width and channels must be >= 1")
        if self.illumination not in ("prior", "prox"):
            raise ConfigError(f"{name}.illumination must be 'prior' or 'prox', got {self.illumination!r}")
        if self.mu_init <= 0:
            raise ConfigError(f"{name}.mu_init must be > 0, got {self.mu_init}")


class ProxNet(nn.Module):
    """Conv-ReLU-Conv-ReLU-Conv: a residual correction (its output is added to its input by the caller)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class UnfoldingOutput:
    out: torch.Tensor
    reflectance: torch.Tensor
    illumination: torch.Tensor
    noise: torch.Tensor
    illumination_high: torch.Tensor
    reflectance_restored: torch.Tensor


class RetinexUnfolding(nn.Module):
    def __init__(self, config: RetinexUnfoldingConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RetinexUnfoldingConfig()
        self.prox_r = ProxNet(c.channels, c.width)
        self.prox_n = ProxNet(c.channels, c.width)
        self.prior: UNet | None = None
        if c.illumination == "prior":
            self.prior = UNet(UNetConfig(1, 1, list(c.prior_channels), residual=False))
            self.prior_head = nn.Sequential(
                nn.Conv2d(c.prior_channels[0], c.width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(c.width, c.width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(c.width, 1, 3, padding=1),
                nn.Sigmoid(),
            )
        else:
            self.prox_l = ProxNet(1, c.prox_l_width)
        self.mu = nn.Parameter(torch.tensor(float(c.mu_init)))
        self.adjust = UNet(UNetConfig(2, 1, list(c.enhance_channels), residual=False))
        self.restore = UNet(UNetConfig(c.channels, c.channels, list(c.enhance_channels), residual=True))

    def illumination_correction(self, l_hat: torch.Tensor) -> torch.Tensor:
        if self.prior is not None:
            return self.prior_head(self.prior.features(l_hat))
        return self.prox_l(l_hat)

    def decompose(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(R, L, N)`` after ``stages − 1`` unfolded updates."""
        c = self.config
        if image.ndim != 4 or image.shape[1] != c.channels:
            raise ValueError(f"RetinexUnfolding expects (B, {c.channels}, H, W), got {tuple(image.shape)}")
        L = image.amax(dim=1, keepdim=True)
        R = image / (L + EPS)
        N = torch.zeros_like(image)
        for _ in range(c.stages - 1):
            l_hat = ((1 - c.alpha * R**2) * L - c.alpha * R * (N - image)).mean(dim=1, keepdim=True)
            L = l_hat + self.illumination_correction(l_hat)
            r_hat = (1 - c.beta * L**2) * R - c.beta * L * (N - image)
            R = r_hat + self.prox_r(r_hat)
            n_hat = soft_threshold(image - R * L, 1.0 / self.mu)
            N = n_hat + self.prox_n(n_hat)
        return R, L, N

    def forward(self, image: torch.Tensor) -> UnfoldingOutput:
        R, L, N = self.decompose(image)
        ratio = torch.full_like(L, self.config.ratio)
        l_high = torch.sigmoid(self.adjust(torch.cat([L, ratio], dim=1)))
        r_restored = self.restore(R)
        return UnfoldingOutput(
            out=l_high * r_restored,
            reflectance=R,
            illumination=L,
            noise=N,
            illumination_high=l_high,
            reflectance_restored=r_restored,
        )
