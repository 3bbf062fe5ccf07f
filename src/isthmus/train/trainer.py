"""``Trainer``: one plain training loop for every model with ``compute_loss(batch) -> ModelOutput``.

Per step: ``model.set_step(t)`` (if present) → lr schedule → ``compute_loss`` → finite-loss check
(the loop's only sync) → backward → global-norm clip → annealed gradient noise → optimizer step →
callbacks. Batches come from index permutations seeded by ``(seed, epoch)``; together with the RNG
states saved in checkpoints this makes ``fit(resume=True)`` continue bit-identically on CPU.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from isthmus import __version__
from isthmus._runtime import configure, resolve_device, seed_everything
from isthmus.config import ConfigError
from isthmus.io import CheckpointError, load_state_strict
from isthmus.train import checkpoint as ckpt
from isthmus.train.callbacks import Callback, Checkpointer, EarlyStopping, MetricsLogger, ProgressBar
from isthmus.train.callbacks.base import HOOKS, overridden_hooks
from isthmus.train.config import TrainerConfig
from isthmus.train.data import BatchSource, derive_seed, epoch_permutation
from isthmus.train.grad_noise import GradientNoise
from isthmus.train.meter import LossMeter
from isthmus.train.rng import capture_rng, restore_rng
from isthmus.train.schedule import LRSchedule

__all__ = ["Trainer", "TrainResult", "NonFiniteLossError", "build_optimizer"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step, epoch and every term."""

    def __init__(self, message: str, step: int, epoch: int, terms: dict[str, float]) -> None:
        super().__init__(message)
        self.step, self.epoch, self.terms = step, epoch, terms


@dataclass
class TrainResult:
    """What ``fit`` returns. ``history`` holds one dict per epoch (``train_*``/``val_*`` means, lr)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float | None = None
    best_epoch: int | None = None
    steps: int = 0
    stopped_early: bool = False
    runtime_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainerConfig) -> torch.optim.Optimizer:
    params = list(params)
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _decay_groups(model: nn.Module, no_decay: list[str]) -> list[dict[str, Any]]:
    """Two optimizer groups: decayed parameters, and those named by ``no_decay`` (weight decay 0)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    off = [p for n, p in named if any(s in n for s in no_decay)]
    on = [p for n, p in named if not any(s in n for s in no_decay)]
    return [g for g in ({"params": on}, {"params": off, "weight_decay": 0.0}) if g["params"]]


def _grad_norm(params: list[nn.Parameter]) -> torch.Tensor:
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class Trainer:
    """Train ``model`` with :class:`TrainerConfig`; extra ``callbacks`` run after the built-in ones.

    Each :meth:`fit` starts a new run (fresh optimizer, step 0, RNGs seeded from ``config.seed``)
    unless ``resume`` continues one from a checkpoint.
    """

    def __init__(self, model: nn.Module, config: TrainerConfig | dict | None = None,
                 callbacks: Iterable[Callback] = ()) -> None:
        if not callable(getattr(model, "compute_loss", None)):
            raise TypeError(f"{type(model).__name__} has no compute_loss(batch) method returning a ModelOutput")
        self.model = model
        self.config = TrainerConfig.from_dict(config) if isinstance(config, dict) else (config or TrainerConfig())
        self.user_callbacks = list(callbacks)
        self.device = resolve_device(self.config.device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.callbacks: list[Any] = []
        self._reset_run_state()

    # ---- run state -------------------------------------------------------------------------------
    def _reset_run_state(self) -> None:
        self.epoch = 0
        self.step_in_epoch = 0
        self.epoch_done = False
        self.global_step = 0
        self.total_steps = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_loss: float | None = None
        self.best_epoch: int | None = None
        self.should_stop = False
        self.meter = LossMeter()
        self.last_loss = math.nan
        self.last_output: Any = None
        self.last_grad_norm: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.resumed_from: Path | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._n_train = 0

    def _build_callbacks(self, has_val: bool) -> list[Any]:
        cfg = self.config
        cbs: list[Any] = []
        if cfg.progress:
            cbs.append(ProgressBar(every=cfg.log_every_steps))
        if cfg.log_path:
            cbs.append(MetricsLogger(cfg.log_path, every=cfg.log_every_steps))
        if cfg.early_stopping_patience is not None:
            if not has_val:
                raise ConfigError("TrainerConfig.early_stopping_patience monitors the validation loss; "
                                  "pass validation data with fit(train, val=...)")
            cbs.append(EarlyStopping(cfg.early_stopping_patience, cfg.min_delta))
        cbs.extend(self.user_callbacks)
        if cfg.checkpoint_dir:
            cbs.append(Checkpointer(cfg.checkpoint_every_steps))  # last: saves what the others did
        return cbs

    # ---- fit -------------------------------------------------------------------------------------
    def fit(self, train: Any, val: Any = None, resume: bool | str | Path = False) -> TrainResult:
        """Train on ``train`` (validating on ``val`` each epoch); ``resume`` = True/path continues a run."""
        train_src, val_src, n_batches = self._prepare(train, val, resume)
        hooks = {h: overridden_hooks(self.callbacks, h) for h in HOOKS}
        t0 = time.perf_counter()
        try:
            for fn in hooks["on_fit_start"]:
                fn(self)
            self._run_epochs(train_src, val_src, n_batches, hooks)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            for fn in hooks["on_fit_end"]:
                fn(self)
        if self.config.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return TrainResult(history=self.history, best_val_loss=self.best_val_loss, best_epoch=self.best_epoch,
                           steps=self.global_step, stopped_early=self.should_stop,
                           runtime_s=time.perf_counter() - t0)

    def _prepare(self, train: Any, val: Any, resume: bool | str | Path) -> tuple[BatchSource, BatchSource | None, int]:
        """Runtime, data, optimizer, schedule, noise, callbacks; then a resume or fresh seeding."""
        cfg = self.config
        configure(cfg.threads, force=cfg.threads is not None)
        torch.set_flush_denormal(True)
        train_src = BatchSource(train, self.device)
        val_src = BatchSource(val, self.device) if val is not None else None
        self._reset_run_state()
        self.model.to(self.device)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(_decay_groups(self.model, cfg.no_decay) if cfg.no_decay else self._params, cfg)
        self._n_train = len(train_src)
        n_batches = train_src.num_batches(cfg.batch_size, cfg.drop_last)
        if n_batches == 0:
            raise ValueError(f"{self._n_train} samples make no full batch of {cfg.batch_size} with drop_last=True")
        self.total_steps = cfg.epochs * n_batches
        self._schedule = LRSchedule(self.optimizer, self.total_steps, cfg.schedule, cfg.warmup_steps)
        self._noise = GradientNoise(cfg.grad_noise_eta, cfg.grad_noise_gamma, derive_seed(cfg.seed, 1),
                                    self.device) if cfg.grad_noise_eta > 0 else None
        self.callbacks = self._build_callbacks(val_src is not None)
        source = self._resume_source(resume)
        if source is not None:
            self._load(source)
        else:
            seed_everything(cfg.seed)
        self._schedule.apply(self.global_step)  # the config's lr wins over the checkpoint's
        return train_src, val_src, n_batches

    def _run_epochs(self, train_src: BatchSource, val_src: BatchSource | None, n_batches: int,
                    hooks: dict[str, list]) -> None:
        if self.epoch_done:  # resumed from an epoch-end checkpoint
            if self.should_stop:
                return
            self.epoch, self.step_in_epoch, self.epoch_done = self.epoch + 1, 0, False
        while self.epoch < self.config.epochs:
            if self.step_in_epoch == 0:
                self.meter.reset_epoch()
                for fn in hooks["on_epoch_start"]:
                    fn(self)
            self._train_epoch(train_src, n_batches, hooks["on_step_end"])
            self._end_epoch(val_src, hooks["on_epoch_end"])
            if self.should_stop:
                return
            self.epoch, self.step_in_epoch, self.epoch_done = self.epoch + 1, 0, False

    def _train_epoch(self, src: BatchSource, n_batches: int, step_hooks: list) -> None:
        """The hot loop: keep per-step Python work and syncs to a minimum."""
        cfg, model, opt, params = self.config, self.model, self.optimizer, self._params
        model.train()
        n, bs = len(src), cfg.batch_size
        perm = epoch_permutation(n, cfg.seed, self.epoch) if cfg.shuffle else None
        set_step = getattr(model, "set_step", None)
        schedule = None if self._schedule.is_constant else self._schedule
        clip, noise, meter = cfg.grad_clip, self._noise, self.meter
        norm_every = cfg.log_every_steps if cfg.log_path else 0
        flush_every = cfg.log_every_steps
        checked = False
        for i in range(self.step_in_epoch, n_batches):
            start = i * bs
            stop = min(start + bs, n)
            batch = src.take(perm[start:stop]) if perm is not None else src.slice(start, stop)
            gs = self.global_step
            if set_step is not None:
                set_step(gs)
            if schedule is not None:
                schedule.apply(gs)
            out = model.compute_loss(batch)
            loss = out.loss
            if not checked:
                _check_output(out, model)
                checked = True
            value = loss.item()  # the loop's one sync
            if not math.isfinite(value):
                raise self._nonfinite(value, out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                self.last_grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
            elif norm_every and (gs + 1) % norm_every == 0:
                self.last_grad_norm = _grad_norm(params)
            if noise is not None:
                noise.apply(params, gs)
            opt.step()
            self.global_step = gs + 1
            self.step_in_epoch = i + 1
            self.last_loss, self.last_output = value, out
            meter.add(value, out.losses, stop - start)
            if self.global_step % flush_every == 0:
                meter.flush()
            for fn in step_hooks:
                fn(self)

    def _end_epoch(self, val_src: BatchSource | None, epoch_hooks: list) -> None:
        self.meter.flush()
        logs: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step}
        logs.update({f"train_{k}": v for k, v in self.meter.epoch.means().items()})
        if val_src is not None:
            val = self._evaluate(val_src)
            logs.update({f"val_{k}": v for k, v in val.items()})
            v = val["loss"]
            if math.isfinite(v) and (self.best_val_loss is None or v < self.best_val_loss):
                self.best_val_loss, self.best_epoch = v, self.epoch
                if self.config.restore_best:
                    self._best_state = {k: t.detach().clone() for k, t in self.model.state_dict().items()}
        logs["lr"] = self.optimizer.param_groups[0]["lr"]
        self.history.append(logs)
        self.epoch_done = True
        for fn in epoch_hooks:
            fn(self, logs)

    def _nonfinite(self, value: float, out: Any) -> NonFiniteLossError:
        terms = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.losses.items()}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items()) or "no named terms"
        hint = "lower the learning rate, enable grad_clip, or check the inputs for NaN"
        if self.config.grad_clip is not None:
            hint = "lower the learning rate or grad_clip, or check the inputs for NaN"
        msg = f"loss became {value} at step {self.global_step} (epoch {self.epoch}): {shown}; {hint}"
        return NonFiniteLossError(msg, self.global_step, self.epoch, terms)

    # ---- evaluate --------------------------------------------------------------------------------
    def evaluate(self, data: Any) -> dict[str, float]:
        """Sample-weighted mean of ``loss`` and every named term over ``data`` (eval mode, no grad)."""
        self.model.to(self.device)
        return self._evaluate(BatchSource(data, self.device))

    @torch.no_grad()
    def _evaluate(self, src: BatchSource) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        meter = LossMeter()
        bs = self.config.eval_batch_size or max(4 * self.config.batch_size, 256)
        try:
            for start in range(0, len(src), bs):
                stop = min(start + bs, len(src))
                out = self.model.compute_loss(src.slice(start, stop))
                meter.add(float(out.loss), out.losses, stop - start)
        finally:
            self.model.train(was_training)
        meter.flush()
        return meter.epoch.means()

    # ---- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, epoch_end: bool = False) -> Path:
        """Write the full training state to ``config.checkpoint_dir`` (see :mod:`isthmus.train.checkpoint`)."""
        cfg = self.config
        if not cfg.checkpoint_dir or self.optimizer is None:
            raise ConfigError("save_checkpoint needs TrainerConfig.checkpoint_dir and a running fit")
        rng_tensors, rng_meta = capture_rng(self._rng_generators())
        state = {
            "isthmus_version": __version__,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "epoch_done": self.epoch_done,
            "global_step": self.global_step, "n_train": self._n_train,
            "best_val_loss": self.best_val_loss, "best_epoch": self.best_epoch,
            "stopped_early": self.should_stop, "history": self.history,
            "meter": self.meter.state_dict(),
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks
                          if hasattr(cb, "state_dict") and hasattr(cb, "state_key")},
            "config": cfg.to_dict(), "rng": rng_meta,
        }
        name = ckpt.checkpoint_name(self.global_step, epoch_end)
        return ckpt.save_checkpoint(cfg.checkpoint_dir, name, model_state=self.model.state_dict(),
                                    optimizer=self.optimizer, rng_tensors=rng_tensors, state=state,
                                    best_model=self._best_state, keep=cfg.keep_checkpoints)

    def _rng_generators(self) -> dict[str, torch.Generator]:
        return {"grad_noise": self._noise.generator} if self._noise is not None else {}

    def _resume_source(self, resume: bool | str | Path) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            if not self.config.checkpoint_dir:
                raise ConfigError("fit(resume=True) needs TrainerConfig.checkpoint_dir")
            found = ckpt.find_latest(self.config.checkpoint_dir)
            if found is None:
                warnings.warn(f"no checkpoint in {self.config.checkpoint_dir}; starting a new run", stacklevel=3)
            return found
        path = Path(resume)
        if (path / "trainer_state.json").exists():
            return path
        found = ckpt.find_latest(path) if path.is_dir() else None
        if found is None:
            raise CheckpointError(f"resume={str(resume)!r}: no checkpoint folder or checkpoint_dir there")
        return found

    def _load(self, path: Path) -> None:
        try:
            c = ckpt.load_checkpoint(path)
        except CheckpointError as exc:
            others = [p.name for p in ckpt.list_checkpoints(path.parent) if p != path]
            hint = f"; older checkpoints there: {others} (pass fit(resume=<folder>))" if others else ""
            raise CheckpointError(f"cannot resume from {path}: {exc}{hint}") from None
        s = c.state
        if not s.get("epoch_done") and s.get("step_in_epoch", 0) > 0:
            saved = s["config"]
            if s["n_train"] != self._n_train or saved.get("batch_size") != self.config.batch_size:
                raise CheckpointError(
                    f"{path} stopped mid-epoch with {s['n_train']} samples in batches of {saved.get('batch_size')}; "
                    f"this fit has {self._n_train} samples in batches of {self.config.batch_size}. "
                    "Resume with the same data and batch_size"
                )
        load_state_strict(self.model, c.model, str(path / "model.safetensors"))
        ckpt.optimizer_from_flat(self.optimizer, c.optimizer["tensors"], c.optimizer["meta"], str(path))
        restore_rng(c.rng_tensors, s["rng"], self._rng_generators())
        self.epoch, self.step_in_epoch = int(s["epoch"]), int(s["step_in_epoch"])
        self.epoch_done, self.global_step = bool(s["epoch_done"]), int(s["global_step"])
        self.best_val_loss, self.best_epoch = s["best_val_loss"], s["best_epoch"]
        self.should_stop, self.history = bool(s["stopped_early"]), list(s["history"])
        self.meter.load_state_dict(s["meter"])
        if c.best_model is not None:
            self._best_state = {k: v.to(self.device) for k, v in c.best_model.items()}
        for cb in self.callbacks:
            key = getattr(cb, "state_key", None)
            if key in s["callbacks"] and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(s["callbacks"][key])
        self.resumed_from = path


def _check_output(out: Any, model: nn.Module) -> None:
    loss = getattr(out, "loss", None)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not isinstance(getattr(out, "losses", None), dict):
        raise TypeError(
            f"{type(model).__name__}.compute_loss must return a ModelOutput with a scalar tensor .loss and "
            f"a dict .losses; got {type(out).__name__} with loss={loss!r:.80}"
        )
