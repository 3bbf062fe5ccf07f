"""``PrototypeClassifier``: autoencoder + prototype layer + classifier, trained jointly.

Li, Liu, Chen & Rudin, "Deep Learning for Case-Based Reasoning through Prototypes" (arXiv 1710.04806).
Loss = λ_class·CE + recon + λ1·R1 + λ2·R2, with λ1, λ2 in the :class:`PrototypeConfig` of the
bottleneck and λ_class (20 in the paper) here. Batches are ``(x, y)`` pairs, so the ordinary
:class:`isthmus.train.Trainer` trains it. Prototypes are explained by decoding them
(:meth:`PrototypeClassifier.decode_prototypes`).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.bottlenecks import Bottleneck
from isthmus.bottlenecks.prototype import PrototypeBottleneck
from isthmus.config import ConfigError
from isthmus.models.autoencoder import AutoEncoder, ObjectiveConfig
from isthmus.models.output import ModelOutput

__all__ = ["PrototypeClassifier"]


class PrototypeClassifier(AutoEncoder):
    """An :class:`AutoEncoder` whose bottleneck is a :class:`PrototypeBottleneck`.

    >>> m = PrototypeClassifier.mlp(12, latent_dim=4, n_prototypes=5, n_classes=3, hidden=(8,))
    >>> out = m.compute_loss((torch.rand(6, 12), torch.tensor([0, 1, 2, 0, 1, 2])))
    >>> sorted(out.losses), out.logits.shape
    (['ce', 'r1', 'r2', 'recon'], torch.Size([6, 3]))
    """

    bottleneck: PrototypeBottleneck  # checked in __init__

    def __init__(
        self,
        encoder: nn.Module,
        bottleneck: Bottleneck | str | dict,
        decoder: nn.Module,
        objective: ObjectiveConfig | None = None,
        class_weight: float = 20.0,
    ) -> None:
        super().__init__(encoder, bottleneck, decoder, objective)
        if not isinstance(self.bottleneck, PrototypeBottleneck):
            raise ConfigError(
                f"PrototypeClassifier needs a 'prototype' bottleneck, got {type(self.bottleneck).__name__}"
            )
        if class_weight < 0:
            raise ConfigError(f"PrototypeClassifier.class_weight must be >= 0, got {class_weight}")
        self.class_weight = float(class_weight)

    @classmethod
    def mlp(cls, *args: Any, class_weight: float = 20.0, **kwargs: Any) -> "PrototypeClassifier":
        """``AutoEncoder.mlp`` with the prototype bottleneck (pass ``n_prototypes``, ``n_classes`` ...)."""
        kwargs.setdefault("bottleneck", "prototype")
        model = cast("PrototypeClassifier", super().mlp(*args, **kwargs))
        model.class_weight = float(class_weight)
        return model

    @classmethod
    def conv(cls, *args: Any, class_weight: float = 20.0, **kwargs: Any) -> "PrototypeClassifier":
        kwargs.setdefault("bottleneck", "prototype")
        model = cast("PrototypeClassifier", super().conv(*args, **kwargs))
        model.class_weight = float(class_weight)
        return model

    def compute_loss(self, batch: Any) -> ModelOutput:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("PrototypeClassifier batches must be (x, y) pairs; build the dataset with labels")
        x, y = batch[0], batch[1]
        out = self(x)  # recon + r1 + r2 (weighted), codes = squared distances (B, m)
        logits = self.bottleneck.logits(out.codes)  # (B, n_classes)
        ce = self.class_weight * F.cross_entropy(logits, y.long())
        losses = {**out.losses, "ce": ce}
        stats = {**out.stats, "accuracy": (logits.argmax(1) == y).float().mean().detach()}
        return ModelOutput(
            loss=out.loss + ce,
            losses=losses,
            recon=out.recon,
            latent=out.latent,
            codes=out.codes,
            logits=logits,
            stats=stats,
        )

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            return torch.cat(
                [self.bottleneck.logits(self(x[i : i + batch_size]).codes) for i in range(0, len(x), batch_size)]
            )
        finally:
            self.train(was)

    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        return self.predict_logits(x, batch_size).argmax(1)

    @torch.no_grad()
    def decode_prototypes(self) -> torch.Tensor:
        """Every prototype decoded to input space, ``(m, *input_shape)`` for conv decoders, ``(m, F)`` for MLPs."""
        was = self.training
        self.eval()
        try:
            return self.decoder(self.bottleneck.prototypes)
        finally:
            self.train(was)

    @torch.no_grad()
    def prototype_distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared distances of each input's encoding to each prototype, ``(B, m)`` (the explanation)."""
        was = self.training
        self.eval()
        try:
            return self(x).codes
        finally:
            self.train(was)

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "class_weight": self.class_weight}

    @classmethod
    def _extra_from_spec(cls, spec: dict[str, Any]) -> dict[str, Any]:
        return {"class_weight": float(spec.get("class_weight", 20.0))}
