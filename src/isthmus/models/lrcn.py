"""Video classifiers built on one per-frame CNN (LRCN, Donahue et al. 2015, arXiv 1411.4389) with an
exchangeable temporal aggregator, so the comparisons of the paper are one argument apart:

* ``"lstm"`` — LRCN: an LSTM over the frame features, a prediction at every step, averaged over time;
* ``"single_frame"`` — the paper's baseline: per-frame predictions averaged over time, no recurrence;
* ``"mean_pool"`` — temporal averaging of the features, then an MLP;
* ``"temporal_conv"`` — a fixed receptive field: three temporal convolutions (kernel 3) over the features.

``freeze_cnn()`` makes the "separately optimised" variant (an LSTM on frozen single-frame features).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from isthmus.models.output import ModelOutput
from isthmus.nn.conv import ConvEncoder, ConvEncoderConfig

__all__ = ["LRCN", "AGGREGATORS"]

AGGREGATORS = ("lstm", "single_frame", "mean_pool", "temporal_conv")


class LRCN(nn.Module):
    def __init__(
        self,
        n_classes: int,
        image_size: int = 24,
        channels: int = 1,
        conv_channels: tuple = (16, 32),
        feature_dim: int = 64,
        hidden: int = 64,
        aggregator: str = "lstm",
        single_frame: bool = False,
    ) -> None:
        super().__init__()
        aggregator = "single_frame" if single_frame else aggregator
        if aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {aggregator!r}")
        self.aggregator = aggregator
        self.cnn = ConvEncoder(
            ConvEncoderConfig(
                in_channels=channels, image_size=image_size, channels=list(conv_channels), out_dim=feature_dim
            )
        )
        if aggregator == "lstm":
            self.temporal: nn.Module = nn.LSTM(feature_dim, hidden, batch_first=True)
            out_in = hidden
        elif aggregator == "temporal_conv":
            self.temporal = nn.Sequential(
                *[
                    m
                    for i in range(3)
                    for m in (nn.Conv1d(feature_dim if i == 0 else hidden, hidden, 3, padding=1), nn.ReLU())
                ]
            )
            out_in = hidden
        elif aggregator == "mean_pool":
            self.temporal = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU())
            out_in = hidden
        else:
            self.temporal = nn.Identity()
            out_in = feature_dim
        self.head = nn.Linear(out_in, n_classes)

    def freeze_cnn(self) -> "LRCN":
        for p in self.cnn.parameters():
            p.requires_grad_(False)
        return self

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` clips → class logits ``(B, n_classes)``."""
        if clips.dim() != 5:
            raise ValueError(f"LRCN expects clips (B, T, C, H, W), got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        feats = torch.relu(self.cnn(clips.flatten(0, 1))).reshape(b, t, -1)  # (B, T, F)
        if self.aggregator == "lstm":
            return self.head(self.temporal(feats)[0]).mean(1)  # a prediction per step, averaged (the paper)
        if self.aggregator == "temporal_conv":
            return self.head(self.temporal(feats.transpose(1, 2)).mean(2))
        if self.aggregator == "mean_pool":
            return self.head(self.temporal(feats.mean(1)))
        return self.head(feats).mean(1)  # single frame: per-frame predictions averaged

    def predict(self, clips: torch.Tensor) -> torch.Tensor:
        return self(clips).argmax(-1)

    def compute_loss(self, batch: Any) -> ModelOutput:
        clips, y = batch
        logits = self(clips)
        ce = nn.functional.cross_entropy(logits, y)
        return ModelOutput(loss=ce, losses={"cross_entropy": ce}, logits=logits)
