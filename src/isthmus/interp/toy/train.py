"""Train toy transformers on the synthetic tasks with the isthmus :class:`~isthmus.train.Trainer`,
and cache the trained weights (``config.json`` + ``model.safetensors`` + ``metrics.json``) under
``$ISTHMUS_CACHE/toy/<task>-<hash>/`` (default ``~/.cache/isthmus``), keyed by a hash of the task,
model and training settings, so a second call loads instead of training.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from isthmus.config import Config
from isthmus.interp.toy.model import ToyConfig, ToyTransformer
from isthmus.interp.toy.tasks import TaskData, make_task
from isthmus.io import CheckpointError, atomic_write_json, read_json
from isthmus.train import Trainer, TrainerConfig

__all__ = ["ToyTrainConfig", "ToyRun", "cache_dir", "train_toy", "evaluate_toy", "CACHE_VERSION"]

CACHE_VERSION = 1


def cache_dir() -> Path:
    """``$ISTHMUS_CACHE`` or ``~/.cache/isthmus``."""
    return Path(os.environ.get("ISTHMUS_CACHE") or Path.home() / ".cache" / "isthmus").expanduser()


@dataclass
class ToyTrainConfig(Config):
    """A task (name + generator kwargs), data sizes and optimisation settings for :func:`train_toy`."""

    task: str = "induction"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    n_train: int = 4096
    n_eval: int = 512
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    seed: int = 0


@dataclass
class ToyRun:
    model: ToyTransformer
    metrics: dict[str, Any]
    path: Path | None
    cached: bool
    vocab: list[str]


@torch.no_grad()
def evaluate_toy(model: ToyTransformer, data: TaskData, batch_size: int = 512) -> dict[str, float]:
    """Cross-entropy and accuracy of the next-token prediction on the task's masked positions."""
    was = model.training
    model.eval()
    ce_sum, correct, count = 0.0, 0, 0
    for s in range(0, len(data), batch_size):
        tok, m = data.tokens[s : s + batch_size], data.mask[s : s + batch_size, 1:]
        logits = model(tok)[:, :-1][m]
        target = tok[:, 1:][m]
        ce_sum += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(-1) == target).sum())
        count += int(m.sum())
    out = {"ce": ce_sum / max(count, 1), "acc": correct / max(count, 1), "n_targets": count}
    if "yy" in data.meta:  # greater-than: the answer is random, so score the mass on valid years
        out["p_greater"] = _p_greater(model, data, batch_size)
    model.train(was)
    return out


@torch.no_grad()
def _p_greater(model: ToyTransformer, data: TaskData, batch_size: int) -> float:
    """Mean probability that the predicted two-digit year exceeds YY (1.0 = always valid)."""
    off, total = data.meta["number_offset"], 0.0
    for s in range(0, len(data), batch_size):
        probs = model(data.tokens[s : s + batch_size])[:, -2].softmax(-1)[:, off : off + 100]  # (B, 100)
        yy = data.meta["yy"][s : s + batch_size]
        total += float((probs * (torch.arange(100)[None] > yy[:, None])).sum())
    return total / len(data)


def _key(model_cfg: ToyConfig, train_cfg: ToyTrainConfig) -> str:
    blob = json.dumps(
        {"v": CACHE_VERSION, "model": model_cfg.to_dict(), "train": train_cfg.to_dict()}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_toy(
    train: ToyTrainConfig | dict | None = None,
    model: ToyConfig | dict | None = None,
    *,
    cache: bool = True,
    progress: bool = False,
    root: str | Path | None = None,
) -> ToyRun:
    """Train (or load from the cache) a :class:`ToyTransformer` on a synthetic task.

    ``model`` fields left unset are filled from the task: ``vocab_size`` and ``n_ctx`` fit the data.
    Metrics (held-out CE/accuracy on masked positions, train time) go to ``metrics.json``.
    """
    tcfg = ToyTrainConfig.from_dict(train) if isinstance(train, dict) else (train or ToyTrainConfig())
    train_data = make_task(tcfg.task, tcfg.n_train, seed=tcfg.seed, **tcfg.task_kwargs)
    mdict = model.to_dict() if isinstance(model, ToyConfig) else dict(model or {})
    mdict.setdefault("vocab_size", train_data.vocab_size)
    mdict.setdefault("n_ctx", train_data.tokens.shape[1])
    mdict.setdefault("seed", tcfg.seed)
    mcfg = ToyConfig.from_dict(mdict)
    folder = Path(root or cache_dir() / "toy") / f"{tcfg.task}-{_key(mcfg, tcfg)}"
    if cache and (folder / "metrics.json").exists():
        try:
            return ToyRun(
                ToyTransformer.from_pretrained(folder),
                read_json(folder / "metrics.json"),
                folder,
                True,
                train_data.vocab,
            )
        except CheckpointError:
            pass  # a damaged cache entry is retrained and overwritten
    net = ToyTransformer(mcfg)
    trainer_cfg = TrainerConfig(
        epochs=tcfg.epochs,
        batch_size=tcfg.batch_size,
        optimizer="adamw",
        lr=tcfg.lr,
        weight_decay=tcfg.weight_decay,
        warmup_steps=tcfg.warmup_steps,
        schedule="cosine",
        grad_clip=1.0,
        seed=tcfg.seed,
        progress=progress,
        device="cpu",
    )
    t0 = time.perf_counter()
    Trainer(net, trainer_cfg).fit(train_data.as_training_data())
    seconds = time.perf_counter() - t0
    net.eval()
    held_out = make_task(tcfg.task, tcfg.n_eval, seed=tcfg.seed + 10_000, **tcfg.task_kwargs)
    metrics = {
        "task": tcfg.task,
        "train_seconds": round(seconds, 3),
        **evaluate_toy(net, held_out),
        "train_config": tcfg.to_dict(),
        "model_config": mcfg.to_dict(),
    }
    if cache:
        net.save_pretrained(folder, extra={"train_config": tcfg.to_dict(), "vocab": train_data.vocab})
        atomic_write_json(folder / "metrics.json", metrics)
    return ToyRun(net, metrics, folder if cache else None, False, train_data.vocab)
