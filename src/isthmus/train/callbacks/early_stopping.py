"""Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

from __future__ import annotations

import math
from typing import Any

from isthmus.train.callbacks.base import Callback

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Sets ``trainer.should_stop``; restoring the best weights is ``TrainerConfig.restore_best``."""

    def __init__(self, patience: int, min_delta: float = 0.0, monitor: str = "val_loss") -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.min_delta = min_delta
        self.monitor = monitor
        self.best: float | None = None
        self.wait = 0

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r} but the epoch logs hold {sorted(logs)}; "
                "pass validation data to fit(val=...)"
            )
        if math.isfinite(value) and (self.best is None or value < self.best - self.min_delta):
            self.best = value
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
