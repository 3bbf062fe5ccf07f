"""The MM-GPVAE simulation (Gondur et al., ICLR 2024, arXiv 2310.03111): GP latents drive a digit
video and a population of Poisson neurons, with known ground truth.

Per trial, three independent RBF-GP time series (unit variance, length-scale ``lengthscale`` steps):

* ``shared``  — rotates the digit (angle = ``max_angle`` · shared) *and* drives the neurons,
* ``image``   — zooms the digit (scale = exp(``zoom`` · image)), image only,
* ``neural``  — drives the neurons only.

Neurons: log-rate = W · [shared, neural] + b, counts ~ Poisson(rate) per bin. The digit template is the
first "3" of MNIST t10k (falls back to scikit-learn digits when MNIST is not on disk; ``meta['source']``
says which), resized to ``image_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MMGPSim", "sample_gp", "digit_template", "make_mm_gp_sim"]


@dataclass
class MMGPSim:
    images: torch.Tensor  # (n, T, H, W) in [0, 1]
    spikes: torch.Tensor  # (n, T, n_neurons) counts (float)
    rates: torch.Tensor  # (n, T, n_neurons) true Poisson rates
    latents: dict[str, torch.Tensor]  # "shared", "image", "neural": (n, T) each
    meta: dict = field(default_factory=dict)

    def subset(self, idx: slice | np.ndarray) -> "MMGPSim":
        return MMGPSim(
            self.images[idx],
            self.spikes[idx],
            self.rates[idx],
            {k: v[idx] for k, v in self.latents.items()},
            dict(self.meta),
        )


def sample_gp(n: int, T: int, lengthscale: float, rng: np.random.Generator, jitter: float = 1e-6) -> np.ndarray:
    """``n`` draws of a unit-variance RBF GP on steps 0..T-1, ``(n, T)``."""
    t = np.arange(T, dtype=float)
    K = np.exp(-0.5 * (t[:, None] - t[None, :]) ** 2 / lengthscale**2) + jitter * np.eye(T)
    return rng.standard_normal((n, T)) @ np.linalg.cholesky(K).T


def digit_template(digit: int = 3, image_size: int = 16) -> tuple[torch.Tensor, str]:
    """One digit image ``(image_size, image_size)`` in [0, 1] and its source name."""
    from isthmus.data import load_digits
    from isthmus.data.paths import DataNotFoundError, load_mnist

    try:
        table, source = load_mnist(), "mnist-t10k"
        side = 28
    except DataNotFoundError:
        table, source = load_digits(), "sklearn-digits (MNIST not found)"
        side = 8
    X = np.asarray(table.X, dtype=np.float32).reshape(-1, side, side)
    img = torch.from_numpy(X[int(np.flatnonzero(np.asarray(table.y) == digit)[0])])[None, None]
    img = F.interpolate(img, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return img[0, 0].clamp(0, 1), source


def _render(template: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Rotate by ``angle`` and zoom by ``scale`` (> 1 enlarges) every frame: ``(F,)`` → ``(F, H, W)``."""
    c, s = torch.cos(angle) / scale, torch.sin(angle) / scale
    zero = torch.zeros_like(c)
    theta = torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1)], -2)  # (F, 2, 3)
    H, W = template.shape
    grid = F.affine_grid(theta, [len(angle), 1, H, W], align_corners=False)
    out = F.grid_sample(template.expand(len(angle), 1, H, W), grid, align_corners=False, padding_mode="zeros")
    return out[:, 0]


def make_mm_gp_sim(
    n_trials: int = 300,
    T: int = 60,
    lengthscale: float = 10.0,
    image_size: int = 16,
    n_neurons: int = 100,
    max_angle: float = np.pi / 4,
    zoom: float = 0.25,
    weight_std: float = 0.7,
    base_rate: float = 1.0,
    seed: int = 0,
    template: torch.Tensor | None = None,
) -> MMGPSim:
    """The simulation of the module doc; everything is a function of ``seed`` (and the template)."""
    rng = np.random.default_rng(seed)
    source = "given"
    if template is None:
        template, source = digit_template(3, image_size)
    lat = {k: torch.from_numpy(sample_gp(n_trials, T, lengthscale, rng)).float() for k in ("shared", "image", "neural")}
    frames = _render(
        template.float(), (max_angle * lat["shared"]).reshape(-1), torch.exp(zoom * lat["image"]).reshape(-1)
    )
    images = frames.reshape(n_trials, T, *template.shape).clamp(0, 1)
    W = torch.from_numpy(rng.normal(0, weight_std, size=(2, n_neurons))).float()
    b = torch.from_numpy(np.log(base_rate) + rng.normal(0, 0.3, size=n_neurons)).float()
    log_rate = torch.stack([lat["shared"], lat["neural"]], -1) @ W + b  # (n, T, n_neurons)
    rates = log_rate.exp()
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    spikes = torch.poisson(rates, generator=gen)
    meta = {
        "template_source": source,
        "lengthscale": lengthscale,
        "max_angle": float(max_angle),
        "zoom": zoom,
        "weight_std": weight_std,
        "base_rate": base_rate,
        "seed": seed,
    }
    return MMGPSim(images=images, spikes=spikes, rates=rates, latents=lat, meta=meta)
