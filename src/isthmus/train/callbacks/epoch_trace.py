"""Record a number computed from the model after every epoch (held-out accuracy, validation loss, a prior's
variances ...), for plots and convergence checks.

``fn(model)`` runs in eval mode without gradients; the model's train/eval mode is restored afterwards, so
tracing never changes what training does. Values are kept in ``.values``, one per epoch.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from isthmus.train.callbacks.base import Callback

__all__ = ["EpochTrace"]


class EpochTrace(Callback):
    def __init__(self, fn: Callable[[torch.nn.Module], Any]) -> None:
        self.fn = fn
        self.values: list[Any] = []

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        model = trainer.model
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                self.values.append(self.fn(model))
        finally:
            model.train(was)
