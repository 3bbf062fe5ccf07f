"""CUE's learnable priors and training objective around :class:`~isthmus.nn.unfolding.RetinexUnfolding`.

* :class:`IlluminationPriorAE` — the "structure flow" prior: a small U-Net pretrained as a masked
  autoencoder over illumination maps (input: max-channel of a brightened image with 50 % of its
  windows zeroed; target: the smoothed, unmasked map; loss: L1 on the masked windows). Its weights
  initialise the unfolding's illumination prior, which is then fine-tuned (errata, seed 16).
* :class:`GradientPrior` — the "optimisation flow" prior: a small U-Net pretrained to map a
  normal-light image to its gradient-magnitude map, then **frozen** and used as a feature loss
  (``frozen_feature_loss``: no gradient reaches the prior, zero for identical inputs).
* :class:`CUEEnhancer` — the unfolding net with the authors' loss terms (``LearnablePrior.yml``
  weights) on ``(I_low, I_gt)`` batches; the same net decomposes I_gt to get (L_gt, R_gt).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from isthmus.models.output import ModelOutput
from isthmus.nn.unet import UNet, UNetConfig
from isthmus.nn.unfolding import RetinexUnfolding, RetinexUnfoldingConfig

__all__ = [
    "window_mask",
    "gradient_magnitude",
    "total_variation",
    "frozen_feature_loss",
    "IlluminationPriorAE",
    "GradientPrior",
    "CUEEnhancer",
    "LOSS_WEIGHTS",
]

# LearnablePrior.yml (notes § 16 (a) 5); the two illumination mutual-consistency terms are left out
LOSS_WEIGHTS = {
    "decomp_low": 1.0,
    "decomp_gt": 1.0,
    "reflectance": 0.009,
    "output": 1.0,
    "illum_high": 1.0,
    "tv": 5.0,
    "restored_reflectance": 1.0,
    "gradient_prior": 0.001,
}


def window_mask(n: int, h: int, w: int, window: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """``(n, 1, h, w)`` float mask: 1 = kept, 0 = masked; ``round(ratio · windows)`` windows masked per image."""
    if h % window or w % window:
        raise ValueError(f"image {h}×{w} is not a whole number of {window}×{window} windows")
    gh, gw = h // window, w // window
    k = int(round(ratio * gh * gw))
    flat = np.ones((n, 1, gh * gw), np.float32)
    for i in range(n):
        flat[i, 0, rng.choice(gh * gw, size=k, replace=False)] = 0.0
    return np.repeat(np.repeat(flat.reshape(n, 1, gh, gw), window, axis=2), window, axis=3)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of the channel mean, ``(B, 1, H, W)`` (replicate padding)."""
    g = x.mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device) / 8
    k = torch.stack([kx, kx.T])[:, None]
    d = nn.functional.conv2d(nn.functional.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    return torch.sqrt((d**2).sum(dim=1, keepdim=True) + 1e-12)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def frozen_feature_loss(net: "GradientPrior", a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between ``net.features`` of ``a`` and of ``b``; ``net``'s parameters get no gradient."""
    if any(p.requires_grad for p in net.parameters()):
        raise ValueError("the prior of a frozen feature loss must be frozen: call .requires_grad_(False)")
    with torch.no_grad():
        fb = net.features(b)
    return (net.features(a) - fb).abs().mean()


class IlluminationPriorAE(nn.Module):
    """Masked AE over illumination maps; ``compute_loss((masked_input, target, keep_mask))``."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.net = UNet(UNetConfig(1, 1, list(channels), residual=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute_loss(self, batch: Any) -> ModelOutput:
        x, target, keep = batch
        hidden = 1.0 - keep
        loss = ((self(x) - target).abs() * hidden).sum() / hidden.sum().clamp_min(1.0)
        return ModelOutput(loss=loss, losses={"masked_l1": loss})


class GradientPrior(nn.Module):
    """Normal-light image → gradient-magnitude map; ``compute_loss(images)``; ``features`` for the loss."""

    def __init__(self, channels: int, widths: list[int]) -> None:
        super().__init__()
        self.net = UNet(UNetConfig(channels, 1, list(widths), residual=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        loss = (self(x) - gradient_magnitude(x)).abs().mean()
        return ModelOutput(loss=loss, losses={"l1": loss})


class CUEEnhancer(nn.Module):
    """The unfolding enhancer trained with CUE's loss on ``(I_low, I_gt)``; ``gradient_prior`` (frozen) optional."""

    def __init__(self, config: RetinexUnfoldingConfig, gradient_prior: GradientPrior | None = None) -> None:
        super().__init__()
        self.net = RetinexUnfolding(config)
        self.gradient_prior = gradient_prior
        if gradient_prior is not None:
            gradient_prior.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).out

    def train(self, mode: bool = True) -> "CUEEnhancer":
        super().train(mode)
        if self.gradient_prior is not None:  # frozen: always in eval mode
            self.gradient_prior.eval()
        return self

    def compute_loss(self, batch: Any) -> ModelOutput:
        low, gt = batch
        o = self.net(low)
        r_gt, l_gt, n_gt = self.net.decompose(gt)
        w = LOSS_WEIGHTS
        terms = {
            "decomp_low": (o.reflectance * o.illumination + o.noise - low).abs().mean(),
            "decomp_gt": (r_gt * l_gt - gt).abs().mean(),
            "reflectance": (o.reflectance - r_gt).abs().mean(),
            "output": (o.out - gt).abs().mean(),
            "illum_high": ((o.illumination_high - l_gt) ** 2).mean(),
            "tv": total_variation(o.illumination_high),
            "restored_reflectance": (o.reflectance_restored - r_gt).abs().mean(),
        }
        if self.gradient_prior is not None:
            terms["gradient_prior"] = frozen_feature_loss(self.gradient_prior, o.out, gt)
        losses = {k: w[k] * v for k, v in terms.items()}
        return ModelOutput(
            loss=sum(losses.values()), losses=losses, recon=o.out, stats={"output_l1": terms["output"].detach()}
        )
