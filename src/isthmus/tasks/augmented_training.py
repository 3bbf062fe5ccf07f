"""A classifier trained on a 50/50 mix of clean and augmented views, with any augmentation rule.

``AugmentedClassifier(net, augment)`` keeps :class:`isthmus.models.Classifier`'s interface (it *is* one),
so the ordinary :class:`isthmus.train.Trainer` trains it. On every training batch ``(x, y[, extra])`` it
calls ``augment(net, x, y, extra)`` for one augmented view per item (no gradient flows through the
augmentation) and minimises ``w · CE(x) + (1 − w) · CE(x_aug)`` with ``w = clean_weight``. In eval
mode (validation) the loss is the clean cross-entropy only, so validation curves of every arm compare.

Rules built here (each one function of the batch, so all arms share data, steps and batch order):

* :func:`pick_rule` — ``extra`` holds ``K`` precomputed candidates per item ``(B, K, ...)``; ``"worst"``
  takes the max-loss one (:func:`isthmus.tasks.adversarial.worst_of_k`: adversarial augmentation over a
  finite set, as NaTra/AdvMix), ``"random"`` one at random (the non-adversarial control);
* :func:`sampled_rule` — draw ``K`` fresh views with a sampler ``(x, extra, generator) -> x_view`` and
  keep the worst (``K > 1``) or the only one (``K = 1``).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models import Classifier
from isthmus.models.output import ModelOutput
from isthmus.tasks.adversarial import worst_of_k

__all__ = ["AugmentedClassifier", "Augment", "pick_rule", "sampled_rule"]

Augment = Callable[[nn.Module, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


class AugmentedClassifier(Classifier):
    def __init__(self, net: nn.Module, augment: Augment | None, clean_weight: float = 0.5) -> None:
        super().__init__(net)
        if not 0.0 <= clean_weight <= 1.0:
            raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
        self.augment, self.clean_weight = augment, clean_weight

    def compute_loss(self, batch: Any) -> ModelOutput:
        if not self.training or self.augment is None:
            return super().compute_loss(batch[:2] if isinstance(batch, (tuple, list)) else batch)
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("AugmentedClassifier batches must be (x, y) or (x, y, extra)")
        x, y = batch[0], batch[1].long()
        extra = batch[2] if len(batch) > 2 else None
        was = self.net.training
        self.net.eval()  # the augmentation searches with the current weights, without touching any statistics
        try:
            x_aug = self.augment(self.net, x, y, extra).detach()
        finally:
            self.net.train(was)
        logits = self.net(torch.cat([x, x_aug]))
        ce_clean = F.cross_entropy(logits[: len(x)], y)
        ce_aug = F.cross_entropy(logits[len(x) :], y)
        w = self.clean_weight
        loss = w * ce_clean + (1 - w) * ce_aug
        acc = (logits[: len(x)].argmax(1) == y).float().mean().detach()
        return ModelOutput(
            loss=loss, losses={"ce": ce_clean, "ce_aug": ce_aug}, logits=logits[: len(x)], stats={"accuracy": acc}
        )


def pick_rule(mode: Literal["worst", "random"], generator: torch.Generator | None = None) -> Augment:
    """Choose among the ``(B, K, ...)`` candidates passed as ``extra`` (see the module doc)."""
    if mode not in ("worst", "random"):
        raise ValueError(f"mode must be 'worst' or 'random', got {mode!r}")
    if mode == "random" and generator is None:
        raise ValueError("pick_rule('random') needs a torch.Generator so that runs are reproducible")

    def rule(net: nn.Module, x: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if extra is None or extra.ndim != x.ndim + 1 or extra.shape[0] != len(x):
            raise ValueError(f"pick_rule needs extra = candidates (B, K, ...) for x {tuple(x.shape)}")
        if mode == "worst":
            return worst_of_k(net, extra, y)[0]
        idx = torch.randint(extra.shape[1], (len(x),), generator=cast(torch.Generator, generator))
        return extra[torch.arange(len(x)), idx]

    return rule


def sampled_rule(
    sample: Callable[[torch.Tensor, torch.Tensor | None, torch.Generator], torch.Tensor],
    generator: torch.Generator,
    k: int = 1,
) -> Augment:
    """Draw ``k`` views per item with ``sample``; keep the worst of them (``k > 1``) or the one (``k = 1``)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    def rule(net: nn.Module, x: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if k == 1:
            return sample(x, extra, generator)
        views = torch.stack([sample(x, extra, generator) for _ in range(k)], 1)
        return worst_of_k(net, views, y)[0]

    return rule
