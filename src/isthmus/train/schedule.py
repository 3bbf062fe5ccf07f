"""Learning-rate schedules: linear warm-up, then constant, cosine or linear decay.

The schedule is a pure function of the global step, so resuming needs no scheduler state and the
learning rate after a resume is exactly the one an uninterrupted run would use.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SCHEDULES", "lr_factor", "LRSchedule"]

SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate for the update at global ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps`` (so the first update is not
    at lr 0). After it, ``progress = (step - warmup) / (total - warmup)`` in [0, 1) drives
    ``cosine``: ``0.5 (1 + cos(pi progress))`` or ``linear``: ``1 - progress``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


class LRSchedule:
    """Sets every param group's lr to ``base_lr * lr_factor(step, ...)`` before each update."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, total_steps: int, schedule: str = "constant", warmup_steps: int = 0
    ) -> None:
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]

    @property
    def is_constant(self) -> bool:
        return self.schedule == "constant" and self.warmup_steps == 0

    def apply(self, step: int) -> float:
        factor = lr_factor(step, self.total_steps, self.schedule, self.warmup_steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return factor
