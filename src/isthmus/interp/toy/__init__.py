"""Tiny transformer zoo: a hookable decoder-only transformer, synthetic tasks with known structure,
and cached training (``train_toy``)."""

from isthmus.interp.toy.model import HookPoint, ToyConfig, ToyTransformer
from isthmus.interp.toy.tasks import TASKS, TaskData, load_chars, make_task, register_task
from isthmus.interp.toy.train import ToyRun, ToyTrainConfig, cache_dir, evaluate_toy, train_toy
from isthmus.interp.toy import planted as _planted  # noqa: F401,E402  registers the "planted" task

__all__ = [
    "ToyConfig",
    "ToyTransformer",
    "HookPoint",
    "TASKS",
    "TaskData",
    "make_task",
    "register_task",
    "load_chars",
    "ToyTrainConfig",
    "ToyRun",
    "cache_dir",
    "train_toy",
    "evaluate_toy",
]
