"""A convolutional autoencoder with a classification head for wide tabular data (seed 23, DeepExplainHidim).

Tabular rows of ``p`` features are zero-padded to a square ``side × side`` image (:func:`pad_to_square`;
``side`` a multiple of 8 so three 2×2 poolings divide it exactly), then:

* encoder: [Conv 3×3 16 → BN → ReLU → MaxPool] → [Conv 8 → BN → ReLU → MaxPool] → [Conv 8 → BN → ReLU → MaxPool]
  (the authors' notebook; the embedding is ``(side/8)² × 8``);
* decoder: the mirror with nearest upsampling and a *linear* output (the authors' sigmoid cannot fit
  unscaled or standardised inputs — errata §23.2);
* head: Conv 32 → BN → ReLU → MaxPool → Dropout 0.25 → Flatten → Dense 512 → Dropout 0.5 → Dense C.

The authors train in two stages (errata §23.1): the AE with MSE (:meth:`ConvAEClassifier.reconstruction_model`),
then encoder + head with cross-entropy only (:meth:`ConvAEClassifier.classifier`, the encoder not frozen).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.classifier import Classifier
from isthmus.models.output import ModelOutput

__all__ = ["square_side", "pad_to_square", "unpad", "ConvAEClassifier"]


def square_side(n_features: int, multiple: int = 8) -> int:
    """Smallest side ``s`` (a multiple of ``multiple``) with ``s² ≥ n_features``."""
    if n_features < 1 or multiple < 1:
        raise ValueError(f"n_features and multiple must be >= 1, got {n_features}, {multiple}")
    s = math.isqrt(n_features - 1) + 1
    return -(-s // multiple) * multiple


def pad_to_square(X: np.ndarray | torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """``(n, p)`` rows → ``(n, 1, s, s)`` float32 images, features in row-major order, zeros after the last."""
    x = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"pad_to_square expects (n_rows, n_features), got shape {tuple(x.shape)}")
    s = square_side(x.shape[1], multiple)
    return F.pad(x, (0, s * s - x.shape[1])).view(len(x), 1, s, s)


def unpad(images: torch.Tensor, n_features: int) -> torch.Tensor:
    """Inverse of :func:`pad_to_square`: ``(n, 1, s, s)`` → ``(n, n_features)``."""
    return images.reshape(len(images), -1)[:, :n_features]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))


class _Reconstruct(nn.Module):
    def __init__(self, owner: "ConvAEClassifier") -> None:
        super().__init__()
        self.owner = owner

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        mse = F.mse_loss(self.owner.reconstruct(x), x)
        return ModelOutput(loss=mse, losses={"mse": mse})


class ConvAEClassifier(nn.Module):
    """Encoder / decoder / classification head on padded images (module docstring)."""

    def __init__(self, n_features: int, n_classes: int, hidden: int = 512) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.n_features, self.side = n_features, square_side(n_features)
        self.encoder = nn.Sequential(_block(1, 16), _block(16, 8), _block(8, 8))
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(16, 1, 3, padding=1),
        )
        e = self.side // 8
        flat = 32 * (e // 2) ** 2 if e >= 2 else 32
        pool: nn.Module = nn.MaxPool2d(2) if e >= 2 else nn.Identity()
        self.head = nn.Sequential(
            nn.Conv2d(8, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            pool,
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, n_classes),
        )

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Accept ``(n, p)`` rows or already padded ``(n, 1, s, s)`` images."""
        if x.ndim == 2:
            if x.shape[1] != self.n_features:
                raise ValueError(f"expected {self.n_features} features, got {x.shape[1]}")
            return pad_to_square(x)
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.images(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.embed(x))

    def reconstruction_model(self) -> nn.Module:
        """Stage 1 for the Trainer: MSE between the padded image and its reconstruction (batches of images)."""
        return _Reconstruct(self)

    def classifier(self) -> Classifier:
        """Stage 2 for the Trainer: cross-entropy through encoder + head (the encoder keeps training)."""
        return Classifier(nn.Sequential(self.encoder, self.head))
