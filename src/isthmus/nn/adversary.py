"""Domain-adversarial alignment: a gradient-reversal layer and a small critic on feature maps.

``grad_reverse(x, scale)`` is the identity forward and multiplies the gradient by ``-scale``
backward (Ganin & Lempitsky 2015), so one optimiser step trains the critic to tell two domains
apart while pushing the features below it to make them indistinguishable. :func:`domain_adversary_loss`
is the critic's binary cross-entropy on the reversed features — the latent adversary of seed 2's
VAE1 and of the DANN U-Net baseline.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["grad_reverse", "DomainCritic", "domain_adversary_loss"]


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return _GradReverse.apply(x, float(scale))


class DomainCritic(nn.Module):
    """``(B, C, H, W)`` feature map → one domain logit per item (two 3×3 convs, global average)."""

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).squeeze(-1)


def domain_adversary_loss(
    critic: nn.Module, source: torch.Tensor, target: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """BCE of ``critic`` telling ``source`` (label 1) from ``target`` (label 0) through a gradient reversal:
    minimising it trains the critic and, reversed, makes the features below it domain-invariant."""
    logits = critic(grad_reverse(torch.cat([source, target]), scale))
    labels = torch.cat([torch.ones(len(source)), torch.zeros(len(target))]).to(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, labels)
