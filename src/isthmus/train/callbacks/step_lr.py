"""Step decay of the learning rate per epoch: ``lr = base · gamma^(epoch // step_epochs)``.

torch's ``StepLR(step_size, gamma)`` stepped once per epoch, written as a pure function of the
epoch so a resumed run needs no scheduler state. Some reference implementations train this way
(StackVAE-G: ``StepLR(10, 0.8)``); the Trainer's own schedules are functions of the step.
"""

from __future__ import annotations

from isthmus.config import ConfigError
from isthmus.train.callbacks.base import Callback

__all__ = ["StepLR"]


class StepLR(Callback):
    """Multiply every param group's base lr by ``gamma`` after each ``step_epochs`` epochs."""

    def __init__(self, step_epochs: int = 10, gamma: float = 0.8) -> None:
        if step_epochs < 1:
            raise ConfigError(f"StepLR.step_epochs must be >= 1, got {step_epochs}")
        if not 0.0 < gamma <= 1.0:
            raise ConfigError(f"StepLR.gamma must be in (0, 1], got {gamma}")
        self.step_epochs, self.gamma = step_epochs, gamma
        self.base_lrs: list[float] = []

    def on_fit_start(self, trainer) -> None:
        cfg = trainer.config
        if cfg.schedule != "constant" or cfg.warmup_steps:
            # the Trainer's step schedule would overwrite this one before every update
            raise ConfigError(
                f"StepLR needs TrainerConfig(schedule='constant', warmup_steps=0), got schedule={cfg.schedule!r}, "
                f"warmup_steps={cfg.warmup_steps}"
            )
        # at fit start (fresh or resumed) the groups hold the config's lr
        self.base_lrs = [group["lr"] for group in trainer.optimizer.param_groups]
        self._apply(trainer)  # a run resumed mid-epoch gets its epoch's lr

    def on_epoch_start(self, trainer) -> None:
        self._apply(trainer)

    def _apply(self, trainer) -> None:
        factor = self.gamma ** (trainer.epoch // self.step_epochs)
        for group, base in zip(trainer.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
