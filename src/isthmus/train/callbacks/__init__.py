"""Trainer callbacks, one file per concept."""

from isthmus.train.callbacks.ard_update import ARDUpdate, update_ard_priors
from isthmus.train.callbacks.base import HOOKS, Callback, overridden_hooks
from isthmus.train.callbacks.checkpointing import Checkpointer
from isthmus.train.callbacks.early_stopping import EarlyStopping
from isthmus.train.callbacks.epoch_trace import EpochTrace
from isthmus.train.callbacks.metrics_log import MetricsLogger
from isthmus.train.callbacks.progress import ProgressBar
from isthmus.train.callbacks.step_lr import StepLR
from isthmus.train.callbacks.tracking import JSONLForwarder, MLflowLogger, TensorBoardLogger, make_tracker

__all__ = [
    "ARDUpdate",
    "Callback",
    "Checkpointer",
    "EarlyStopping",
    "EpochTrace",
    "HOOKS",
    "JSONLForwarder",
    "MLflowLogger",
    "MetricsLogger",
    "ProgressBar",
    "StepLR",
    "TensorBoardLogger",
    "make_tracker",
    "overridden_hooks",
    "update_ard_priors",
]
