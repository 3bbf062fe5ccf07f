"""Seeded image augmentations for contrastive learning, batched in torch (no torchvision).

One call transforms a ``(B, C, H, W)`` batch in ``[0, 1]``: a geometric step (random resized crop,
rotation, horizontal flip — one affine warp per image through ``grid_sample``), then colour jitter
(brightness shift, contrast scale about each image's mean, applied together with probability
``jitter_p``, as SimCLR's ``random_apply``), then Gaussian noise, then a clip to ``[0, 1]``.

``per="image"`` draws every random parameter per image (SimCLR's definition); ``per="batch"`` draws
one value per op for the whole batch — what G-SimCLR's reference code does, since its Keras
``Lambda`` sees the batch tensor and each ``tf.image.random_*`` call draws one scalar
(``errata-seeds-new-recipes.md``, seed 37, item 2). Randomness comes only from the
``torch.Generator`` passed in, so a seed fixes every view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from isthmus.config import Config, ConfigError

__all__ = ["AugmentConfig", "augment", "AUTHORS_G_SIMCLR", "CARD_G_SIMCLR"]


@dataclass
class AugmentConfig(Config):
    """What :func:`augment` does; the defaults do nothing (identity)."""

    crop_scale: tuple[float, float] = (1.0, 1.0)  # area fraction of the resized crop (square crops)
    rotate_deg: float = 0.0  # uniform in ±rotate_deg
    flip_p: float = 0.0  # horizontal flip probability
    jitter_p: float = 0.0  # probability of applying brightness + contrast together
    brightness: float = 0.0  # additive shift, uniform in ±brightness
    contrast: float = 0.0  # scale about the image mean, uniform in [1 - contrast, 1 + contrast]
    noise_std: float = 0.0  # additive Gaussian noise
    per: Literal["image", "batch"] = "image"

    def validate(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"AugmentConfig.crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        for name in ("flip_p", "jitter_p"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ConfigError(f"AugmentConfig.{name} must be in [0, 1], got {p}")
        for name in ("rotate_deg", "brightness", "noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.contrast < 1:
            raise ConfigError(f"AugmentConfig.contrast must be in [0, 1), got {self.contrast}")
        if self.per not in ("image", "batch"):
            raise ConfigError(f"AugmentConfig.per must be 'image' or 'batch', got {self.per!r}")


# G-SimCLR's effective pipeline (errata item 1): flip p 0.5 + colour jitter p 0.5 with s = 0.2
# (brightness 0.8 s, contrast 1 ± 0.8 s); colour drop is a no-op in their code and there is no crop.
AUTHORS_G_SIMCLR = AugmentConfig(flip_p=0.5, jitter_p=0.5, brightness=0.16, contrast=0.16)
# The referee card's shrunk pipeline for grey 28x28 digits: crop 0.5-1, ±15°, brightness/contrast s 0.2, noise.
CARD_G_SIMCLR = AugmentConfig(
    crop_scale=(0.5, 1.0), rotate_deg=15.0, jitter_p=0.8, brightness=0.16, contrast=0.16, noise_std=0.05
)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def augment(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of ``x`` ``(B, C, H, W)`` (values in [0, 1]); see the module doc."""
    if x.ndim != 4:
        raise ValueError(f"augment expects images (B, C, H, W), got shape {tuple(x.shape)}")
    b = x.shape[0]
    n = b if config.per == "image" else 1
    expand = (lambda t: t) if config.per == "image" else (lambda t: t.expand(b))

    lo, hi = config.crop_scale
    out = x
    if (lo, hi) != (1.0, 1.0) or config.rotate_deg > 0 or config.flip_p > 0:
        s = expand(_uniform(n, lo, hi, generator).sqrt())  # side fraction of a square crop
        tx = expand(_uniform(n, -1, 1, generator)) * (1 - s)  # crop centre stays inside the image
        ty = expand(_uniform(n, -1, 1, generator)) * (1 - s)
        ang = expand(_uniform(n, -config.rotate_deg, config.rotate_deg, generator)) * (math.pi / 180)
        flip = expand((torch.rand(n, generator=generator) < config.flip_p).float())
        sign = 1 - 2 * flip  # -1 mirrors the sampling grid horizontally
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack(
            [torch.stack([s * cos * sign, -s * sin, tx], 1), torch.stack([s * sin * sign, s * cos, ty], 1)], 1
        ).to(x.dtype)  # (B, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if config.jitter_p > 0:
        on = expand((torch.rand(n, generator=generator) < config.jitter_p).float()).view(b, 1, 1, 1).to(x.dtype)
        shift = expand(_uniform(n, -config.brightness, config.brightness, generator)).view(b, 1, 1, 1).to(x.dtype)
        scale = expand(_uniform(n, 1 - config.contrast, 1 + config.contrast, generator)).view(b, 1, 1, 1).to(x.dtype)
        out = out + shift  # brightness first, then contrast, as tf.image does in the authors' order
        mean = out.mean(dim=(2, 3), keepdim=True)
        jittered = (out - mean) * scale + mean
        out = on * jittered + (1 - on) * (out - shift)
    if config.noise_std > 0:
        noise = torch.randn(out.shape if config.per == "image" else out.shape[1:], generator=generator)
        out = out + config.noise_std * noise.to(x.dtype)
    return out.clamp(0.0, 1.0)
