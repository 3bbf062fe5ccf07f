"""SimCLR pretraining (Chen et al. 2020, arXiv 2002.05709) with a pluggable batch order and negative mask.

The pieces a contrastive recipe varies are arguments: the **batch sampler** (random each epoch,
random fixed once, G-SimCLR's cluster-interleaved batches — :mod:`isthmus.data.batching`), the
**augmentation** (:mod:`isthmus.data.augment`) and an optional **negative mask** built from each
batch's indices (e.g. "no same-class negatives", the oracle of G-SimCLR's premise). The loss is
:func:`isthmus.nn.contrastive.nt_xent`; the optimiser and schedule default to G-SimCLR's reference
code: plain SGD, lr 0.1, TF ``CosineDecayRestarts(first_decay_steps=1000)`` (t_mul 2, m_mul 1).

:class:`SimCLR` exposes the layers G-SimCLR probes: ``p3`` (the backbone's pooled feature),
``p2`` (after the head's first ReLU) and ``p1`` (after its second ReLU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.data.augment import AugmentConfig, augment
from isthmus.nn.contrastive import nt_xent

__all__ = ["SmallCNN", "SimCLR", "SimCLRConfig", "SimCLRResult", "fit_simclr", "cosine_decay_restarts"]


class SmallCNN(nn.Module):
    """``[Conv3×3 → BN → ReLU → MaxPool2]`` per width, then global average pooling: ``(B, C, H, W) → (B, widths[-1])``."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.net = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


class SimCLR(nn.Module):
    """Backbone + projection head ``Dense-ReLU-Dense-ReLU-Dense`` (G-SimCLR: 256-128-50, no BN)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, head: Sequence[int] = (256, 128, 50)) -> None:
        super().__init__()
        if len(head) != 3:
            raise ValueError(f"head must list three widths (p2, p1, projection), got {head}")
        self.backbone = backbone
        self.fc1, self.fc2, self.fc3 = (
            nn.Linear(feature_dim, head[0]),
            nn.Linear(head[0], head[1]),
            nn.Linear(head[1], head[2]),
        )

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p3 = self.backbone(x)
        p2 = torch.relu(self.fc1(p3))
        p1 = torch.relu(self.fc2(p2))
        return {"p3": p3, "p2": p2, "p1": p1, "z": self.fc3(p1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)["z"]

    @torch.no_grad()
    def features(
        self, x: torch.Tensor, layers: Sequence[str] = ("p3",), batch_size: int = 512
    ) -> dict[str, np.ndarray]:
        """Frozen features (eval mode: BN running statistics, as the authors' probe) per named layer."""
        was = self.training
        self.eval()
        try:
            parts: dict[str, list[np.ndarray]] = {k: [] for k in layers}
            for i in range(0, len(x), batch_size):
                out = self.layers(x[i : i + batch_size])
                for k in layers:
                    parts[k].append(out[k].numpy())
            return {k: np.concatenate(v) for k, v in parts.items()}
        finally:
            self.train(was)


def cosine_decay_restarts(
    step: int, first_decay_steps: int, t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0
) -> float:
    """TF ``CosineDecayRestarts`` multiplier at ``step`` (1.0 at every restart, periods × ``t_mul``)."""
    frac = step / first_decay_steps
    if t_mul == 1.0:
        i = math.floor(frac)
        frac -= i
    else:
        i = math.floor(math.log(1 - frac * (1 - t_mul)) / math.log(t_mul))
        frac = (frac - (1 - t_mul**i) / (1 - t_mul)) / t_mul**i
    decayed = 0.5 * m_mul**i * (1 + math.cos(math.pi * frac))
    return (1 - alpha) * decayed + alpha


@dataclass
class SimCLRConfig(Config):
    epochs: int = 8
    lr: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    restart_steps: int = 1000  # CosineDecayRestarts(first_decay_steps); 0 = constant lr
    tau: float = 0.1
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> None:
        if self.epochs < 1 or self.lr <= 0 or self.tau <= 0 or self.restart_steps < 0:
            raise ConfigError(f"SimCLRConfig needs epochs >= 1, lr > 0, tau > 0, restart_steps >= 0; got {self}")


@dataclass
class SimCLRResult:
    step_loss: list[float]  # NT-Xent per optimiser step
    epoch_loss: list[float]  # mean per epoch
    batches: list[list[int]]  # the batches of the last epoch (to audit the batch order)


def fit_simclr(
    model: SimCLR,
    x: torch.Tensor,
    batches: Iterable[list[int]],
    config: SimCLRConfig,
    seed: int = 0,
    negative_mask: Callable[[np.ndarray], torch.Tensor] | None = None,
) -> SimCLRResult:
    """Train ``model`` in place on images ``x`` ``(N, C, H, W)``.

    ``batches`` is re-iterated every epoch (a batch sampler); batches of one item are skipped (no
    negatives). ``negative_mask(idx)`` returns the ``(B, B)`` bool mask for the batch ``idx``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    params = model.parameters()
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
        if config.optimizer == "sgd"
        else torch.optim.Adam(params, lr=config.lr)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: cosine_decay_restarts(s, config.restart_steps)) if config.restart_steps else (lambda s: 1.0)
    )
    model.train()
    step_loss: list[float] = []
    epoch_loss: list[float] = []
    seen: list[list[int]] = []
    for _ in range(config.epochs):
        seen, losses = [], []
        for batch in batches:
            idx = np.asarray(batch, dtype=np.int64)
            seen.append(idx.tolist())
            if idx.size < 2:
                continue
            xb = x[torch.from_numpy(idx)]
            v1, v2 = augment(xb, config.augment, gen), augment(xb, config.augment, gen)
            mask = negative_mask(idx) if negative_mask is not None else None
            loss = nt_xent(model(v1), model(v2), tau=config.tau, negative_mask=mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        if not losses:
            raise ValueError("no batch held two or more items: SimCLR has no negatives to contrast")
        step_loss += losses
        epoch_loss.append(float(np.mean(losses)))
    model.eval()
    return SimCLRResult(step_loss=step_loss, epoch_loss=epoch_loss, batches=seen)
