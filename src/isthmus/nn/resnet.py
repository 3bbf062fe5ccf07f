"""A small ResNet with named stages, for split computing (BottleFit) and as a compact image classifier.

``ResNet(widths=(8, 16, 32))`` is a ResNet-8: a 3×3 stem, three basic blocks (two 3×3 convs each, with a
1×1 projection shortcut where the shape changes), global average pooling and a linear layer. Each stage
is an attribute (``stem``, ``stage1``, ``stage2``, ...), :meth:`ResNet.features` returns every stage's
output by name, and :meth:`ResNet.tail` gives the modules after a stage, so a network can be cut at a
named stage and its tail reused by a split student.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet"]


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem → ``stage1 … stageN`` (one basic block each) → pool → linear."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = (8, 16, 32),
        strides: tuple[int, ...] = (2, 2, 2),
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        if len(widths) != len(strides) or not widths:
            raise ValueError(f"widths and strides must be non-empty and of one length, got {widths}, {strides}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        self.stage_names = [f"stage{i + 1}" for i in range(len(widths))]
        c = widths[0]
        for name, w, s in zip(self.stage_names, widths, strides):
            setattr(self, name, BasicBlock(c, w, s))
            c = w
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, n_classes)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output by name (``stem``, ``stage1``, …) and the ``logits``."""
        out = {"stem": self.stem(x)}
        h = out["stem"]
        for name in self.stage_names:
            h = out[name] = getattr(self, name)(h)
        out["logits"] = self.fc(self.pool(h))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)["logits"]

    def head(self, upto: str) -> nn.Sequential:
        """The modules from the input through stage ``upto`` (shared, not copied)."""
        names = self._names(upto)
        return nn.Sequential(self.stem, *[getattr(self, n) for n in self.stage_names[: names + 1]])

    def tail(self, after: str) -> nn.Sequential:
        """The modules after stage ``after`` through the logits (shared, not copied)."""
        names = self._names(after)
        return nn.Sequential(*[getattr(self, n) for n in self.stage_names[names + 1 :]], self.pool, self.fc)

    def _names(self, stage: str) -> int:
        if stage not in self.stage_names:
            raise ValueError(f"unknown stage {stage!r}; stages are {self.stage_names}")
        return self.stage_names.index(stage)
