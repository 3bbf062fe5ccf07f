"""``TrainerConfig``: every knob of :class:`isthmus.train.Trainer`, typed and JSON-serialisable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from isthmus.config import Config, ConfigError

__all__ = ["TrainerConfig"]


@dataclass
class TrainerConfig(Config):
    """How to train a model that has ``compute_loss(batch) -> ModelOutput``.

    Steps and epochs are counted from 0. ``schedule`` shapes the learning rate after a linear
    warm-up of ``warmup_steps``; ``grad_clip`` clips the global gradient norm; ``grad_noise_eta``
    > 0 adds annealed Gaussian noise N(0, eta / (1 + t)^gamma) to every gradient after clipping
    (Neelakantan et al., arXiv 1511.06807). ``early_stopping_patience`` monitors the validation
    loss; ``restore_best`` loads the weights of the best validation epoch when fit ends.
    ``checkpoint_dir`` enables checkpoints at every epoch end (and every
    ``checkpoint_every_steps`` steps); ``fit(resume=True)`` continues from the latest one.
    ``precision="bf16"`` runs ``compute_loss`` under bfloat16 autocast (CPU and CUDA; weights,
    optimizer and gradients stay fp32). ``num_workers``/``pin_memory`` feed torch Datasets through
    a ``DataLoader``. ``runtime_defaults=False`` leaves the caller's thread count and denormal mode
    alone during ``fit`` (see :mod:`isthmus._runtime`). Under ``torchrun``, ``batch_size`` is the
    global batch, split evenly across ranks (see :mod:`isthmus.train.distributed`).
    """

    epochs: int = 30
    batch_size: int = 64
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    # parameters whose name contains one of these strings get no weight decay (e.g. ["bias", "bottleneck."]:
    # decay on weight matrices only, as latent-quantization papers do)
    no_decay: list[str] = field(default_factory=list)
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None
    # with grad_clip: clip each part separately — the parameters whose names start with each prefix, then the rest —
    # as papers that train one optimizer per network do (MM-GPVAE: image net, spike encoder, spike readout); [] = one
    # global norm. A large loss term then cannot shrink the gradients of a part it does not reach.
    grad_clip_groups: list[str] = field(default_factory=list)
    grad_noise_eta: float = 0.0
    grad_noise_gamma: float = 0.55
    early_stopping_patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = False
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    log_path: str | None = None
    log_every_steps: int = 50
    checkpoint_dir: str | None = None
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2
    shuffle: bool = True
    drop_last: bool = False
    eval_batch_size: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    num_workers: int = 0
    pin_memory: bool = False
    runtime_defaults: bool = True

    def validate(self) -> None:
        name = type(self).__name__
        positive_ints = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "log_every_steps": self.log_every_steps,
            "keep_checkpoints": self.keep_checkpoints,
        }
        optional_positive = {
            "early_stopping_patience": self.early_stopping_patience,
            "threads": self.threads,
            "checkpoint_every_steps": self.checkpoint_every_steps,
            "eval_batch_size": self.eval_batch_size,
        }
        for field_name, value in {**positive_ints, **optional_positive}.items():
            if value is not None and value < 1:
                raise ConfigError(f"{name}.{field_name} must be >= 1, got {value}")
        if not self.lr > 0:
            raise ConfigError(f"{name}.lr must be > 0, got {self.lr}")
        for field_name in (
            "weight_decay",
            "grad_noise_eta",
            "grad_noise_gamma",
            "min_delta",
            "warmup_steps",
            "num_workers",
        ):
            if getattr(self, field_name) < 0:
                raise ConfigError(f"{name}.{field_name} must be >= 0, got {getattr(self, field_name)}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{name}.momentum must be in [0, 1), got {self.momentum}")
        if self.momentum > 0 and self.optimizer != "sgd":
            raise ConfigError(
                f"{name}.momentum={self.momentum} only applies to optimizer='sgd'; "
                f"for {self.optimizer!r} set betas instead"
            )
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"{name}.betas must both be in [0, 1), got {list(self.betas)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"{name}.grad_clip must be > 0 (or null to disable), got {self.grad_clip}")
        if self.grad_clip_groups and self.grad_clip is None:
            raise ConfigError(
                f"{name}.grad_clip_groups needs grad_clip (the norm each part is clipped to); set grad_clip"
            )
        if self.checkpoint_every_steps is not None and self.checkpoint_dir is None:
            raise ConfigError(f"{name}.checkpoint_every_steps needs checkpoint_dir; set checkpoint_dir to a folder")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError(
                    f"{name}.device: {self.device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
                ) from None
