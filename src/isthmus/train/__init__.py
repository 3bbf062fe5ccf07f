"""Training: :class:`Trainer`, its config, callbacks, checkpoints and step transforms.

>>> import torch
>>> from isthmus.models import AutoEncoder
>>> from isthmus.train import Trainer, TrainerConfig
>>> result = Trainer(AutoEncoder.mlp(64, 8), TrainerConfig(epochs=1, progress=False)).fit(torch.rand(256, 64))
"""

from isthmus.train import callbacks
from isthmus.train.callbacks import Callback, Checkpointer, EarlyStopping, MetricsLogger, ProgressBar
from isthmus.train.checkpoint import find_latest, load_checkpoint
from isthmus.train.config import TrainerConfig
from isthmus.train.grad_noise import GradientNoise, annealed_noise_std
from isthmus.train.schedule import LRSchedule, lr_factor
from isthmus.train.trainer import NonFiniteLossError, Trainer, TrainResult

__all__ = [
    "Trainer",
    "TrainerConfig",
    "TrainResult",
    "NonFiniteLossError",
    "callbacks",
    "Callback",
    "Checkpointer",
    "EarlyStopping",
    "MetricsLogger",
    "ProgressBar",
    "GradientNoise",
    "annealed_noise_std",
    "LRSchedule",
    "lr_factor",
    "find_latest",
    "load_checkpoint",
]
