"""Multi-stage training with freeze sets (BottleFit's generalised head-network distillation, then KD
fine-tuning): each stage trains some modules on its own loss while others stay frozen — no gradient,
BatchNorm statistics fixed (eval mode) — and the stage checks that the frozen weights are bit-identical
afterwards. The learning rate is multiplied by ``gamma`` at ``milestone`` (a fraction of the stage), as
the authors' MultiStepLR configs do; ``evaluate`` is called ``evals_per_epoch`` times per epoch to trace
a curve for the convergence check (:func:`improved_less_than`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn

__all__ = ["StageConfig", "train_stage", "improved_less_than"]


@dataclass
class StageConfig:
    epochs: int
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    milestone: float = 0.5  # fraction of the stage's steps after which lr *= gamma (>= 1: never)
    gamma: float = 0.1
    batch_size: int = 64
    evals_per_epoch: int = 2

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.evals_per_epoch < 1:
            raise ValueError(f"epochs, batch_size and evals_per_epoch must be >= 1, got {self}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


def train_stage(
    trainable: Sequence[nn.Module],
    loss_fn: Callable[..., torch.Tensor],
    tensors: Sequence[torch.Tensor],
    cfg: StageConfig,
    seed: int,
    frozen: Sequence[nn.Module] = (),
    evaluate: Callable[[], float] | None = None,
) -> list[float]:
    """Train ``trainable`` on ``loss_fn(*batch)`` over minibatches of ``tensors``; returns the eval curve."""
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError("all tensors must have the same first dimension")
    params = [p for m in trainable for p in m.parameters()]
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    if frozen_ids & {id(p) for p in params}:
        raise ValueError("a module is both trainable and frozen")
    before = [p.detach().clone() for m in frozen for p in m.parameters()]
    flags = [(p, p.requires_grad) for m in frozen for p in m.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(params, cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adam"
        else torch.optim.SGD(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    )
    steps_per_epoch = -(-n // cfg.batch_size)
    total, decay_at = cfg.epochs * steps_per_epoch, int(cfg.milestone * cfg.epochs * steps_per_epoch)
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)
    g = torch.Generator().manual_seed(seed)
    curve: list[float] = []
    step = 0
    try:
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, cfg.batch_size):
                for m in trainable:
                    m.train()
                for m in frozen:
                    m.eval()
                if step == decay_at:
                    for group in opt.param_groups:
                        group["lr"] *= cfg.gamma
                idx = perm[i : i + cfg.batch_size]
                loss = loss_fn(*[t[idx] for t in tensors])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if evaluate is not None and (step % eval_every == 0 or step == total):
                    for m in (*trainable, *frozen):
                        m.eval()
                    with torch.no_grad():
                        curve.append(float(evaluate()))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    after = [p.detach() for m in frozen for p in m.parameters()]
    if any(not torch.equal(a, b) for a, b in zip(before, after)):
        raise RuntimeError("a frozen module's weights changed during the stage")
    for m in (*trainable, *frozen):
        m.eval()
    return curve


def improved_less_than(curve: Sequence[float], rel: float = 0.01, frac: float = 0.2) -> bool:
    """The referee cards' PLATEAU: the metric (higher = better) rose by less than ``rel`` × |final value| over
    the last ``frac`` of the curve (False for a curve too short to tell)."""
    if len(curve) < 2:
        return False
    k = max(1, round(frac * len(curve)))
    start = curve[-k - 1]
    return float(curve[-1]) - float(start) < rel * abs(float(curve[-1]))
