"""Recurrent-convolutional video encoder (LRCN, Donahue et al. 2015, arXiv 1411.4389): a CNN per frame,
an LSTM over the frame features, a classifier on the LSTM outputs averaged over time (the paper
averages per-frame predictions of the LSTM; ``pool="last"`` uses the final step instead).

``single_frame=True`` gives the paper's baseline with the *same* CNN: per-frame predictions averaged
over time, no recurrence, so any gain of the LSTM is the value of temporal order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from isthmus.models.output import ModelOutput
from isthmus.nn.conv import ConvEncoder, ConvEncoderConfig

__all__ = ["LRCN"]


class LRCN(nn.Module):
    def __init__(self, n_classes: int, image_size: int = 24, channels: int = 1, conv_channels: tuple = (16, 32),
                 feature_dim: int = 64, hidden: int = 64, single_frame: bool = False, pool: str = "mean") -> None:
        super().__init__()
        if pool not in ("mean", "last"):
            raise ValueError(f"pool must be 'mean' or 'last', got {pool!r}")
        self.cnn = ConvEncoder(ConvEncoderConfig(in_channels=channels, image_size=image_size,
                                                 channels=list(conv_channels), out_dim=feature_dim))
        self.single_frame, self.pool = single_frame, pool
        self.lstm = None if single_frame else nn.LSTM(feature_dim, hidden, batch_first=True)
        self.head = nn.Linear(feature_dim if single_frame else hidden, n_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` clips → class logits ``(B, n_classes)``."""
        if clips.dim() != 5:
            raise ValueError(f"LRCN expects clips (B, T, C, H, W), got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        feats = torch.relu(self.cnn(clips.flatten(0, 1))).reshape(b, t, -1)  # (B, T, F)
        steps = feats if self.lstm is None else self.lstm(feats)[0]  # (B, T, H)
        logits = self.head(steps)  # per-step predictions, as the paper makes them
        return logits[:, -1] if self.pool == "last" and self.lstm is not None else logits.mean(1)

    def predict(self, clips: torch.Tensor) -> torch.Tensor:
        return self(clips).argmax(-1)

    def compute_loss(self, batch: Any) -> ModelOutput:
        clips, y = batch
        logits = self(clips)
        ce = nn.functional.cross_entropy(logits, y)
        return ModelOutput(loss=ce, losses={"cross_entropy": ce}, logits=logits)
