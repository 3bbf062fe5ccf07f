"""L∞ adversarial attacks, robust accuracy and input purification — for checking defences honestly.

* :func:`fgsm` (Goodfellow et al., arXiv 1412.6572) and :func:`pgd` (Madry et al., arXiv 1706.06083; random
  start, projected signed-gradient steps) attack any differentiable ``forward(x) -> logits``.
* :class:`Purified` puts ``decode(bottleneck(encode(x)))`` of an AutoEncoder in front of a classifier. A
  quantizing bottleneck with a straight-through estimator (``quantized_gaussian``, ``scalar_codebooks``,
  ``vq``, ``fsq``) makes autograd through it the BPDA gradient (Athalye et al., arXiv 1802.00420), so
  attacking ``Purified`` end to end is the adaptive attack; attacking the bare classifier and feeding the
  result through the purifier is the weaker transfer ("gray-box") setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, cast

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from isthmus.models import AutoEncoder

__all__ = ["fgsm", "pgd", "worst_of_k", "accuracy", "Purified"]

Forward = Callable[[torch.Tensor], torch.Tensor]


def _input_grad(forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(forward(x), y)
    (g,) = torch.autograd.grad(loss, x)
    return g


def fgsm(
    forward: Forward, x: torch.Tensor, y: torch.Tensor, eps: float, lo: float = 0.0, hi: float = 1.0
) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` that raises the cross-entropy, clipped to [lo, hi]."""
    return (x + eps * _input_grad(forward, x, y).sign()).clamp(lo, hi).detach()


def pgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 20,
    alpha: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    lo: float = 0.0,
    hi: float = 1.0,
) -> torch.Tensor:
    """``steps`` signed-gradient steps of ``alpha`` (default 2.5·eps/steps), projected on the ε-ball and [lo, hi]."""
    alpha = 2.5 * eps / steps if alpha is None else alpha
    adv = x.detach().clone()
    if random_start:
        adv = adv + (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    adv = adv.clamp(lo, hi)
    for _ in range(steps):
        adv = adv + alpha * _input_grad(forward, adv, y).sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(lo, hi).detach()
    return adv


@torch.no_grad()
def worst_of_k(forward: Forward, candidates: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(picked (B, ...), index (B,))``: per item, the candidate of ``candidates`` ``(B, K, ...)`` with the highest
    cross-entropy under ``forward`` (a search over a finite set of transformations; ties go to the first)."""
    if candidates.ndim < 3 or candidates.shape[0] != len(y):
        raise ValueError(f"candidates must be (B, K, ...) with B = len(y) = {len(y)}, got {tuple(candidates.shape)}")
    b, k = candidates.shape[:2]
    logits = forward(candidates.reshape(b * k, *candidates.shape[2:]))
    loss = F.cross_entropy(logits, y.repeat_interleave(k), reduction="none").view(b, k)
    idx = loss.argmax(1)
    return candidates[torch.arange(b), idx], idx


@torch.no_grad()
def accuracy(forward: Forward, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    pred = torch.cat([forward(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((pred == y).float().mean())


class Purified(nn.Module):
    """``classifier(purify(x))`` with ``purify = decoder ∘ bottleneck ∘ encoder`` of ``autoencoder`` (eval mode).

    Both parts are frozen (eval mode, no parameter gradients); gradients still flow to the input.
    """

    def __init__(self, autoencoder: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.autoencoder, self.classifier = autoencoder.eval(), classifier.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        ae = cast("AutoEncoder", self.autoencoder)
        return ae.decoder(ae.bottleneck(ae.encoder(x)).latent).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purify(x))

    def train(self, mode: bool = True) -> "Purified":
        return super().train(False)  # a purifier in front of a deployed classifier never trains
