"""``Trainer``: one plain training loop for every model with ``compute_loss(batch) -> ModelOutput``.

Per step: ``model.set_step(t)`` (if present) → lr schedule → ``compute_loss`` → finite-loss check
(the loop's only sync) → backward → global-norm clip → annealed gradient noise → optimizer step →
callbacks. Batches come from index permutations seeded by ``(seed, epoch)``; together with the RNG
states saved in checkpoints this makes ``fit(resume=True)`` continue bit-identically on CPU.
Streamed data (``DataLoader``, ``IterableDataset``) is in :mod:`isthmus.train.loader`; ``torchrun``
data parallelism in :mod:`isthmus.train.distributed`; ``precision="bf16"`` autocasts ``compute_loss``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, cast

import torch
from torch import nn

from isthmus import __version__
from isthmus._runtime import resolve_device, runtime_defaults, seed_everything
from isthmus.config import ConfigError
from isthmus.io import CheckpointError, load_state_strict
from isthmus.train import checkpoint as ckpt
from isthmus.train.callbacks import Callback, Checkpointer, EarlyStopping, MetricsLogger, ProgressBar
from isthmus.train.callbacks.base import HOOKS, overridden_hooks
from isthmus.train.config import TrainerConfig
from isthmus.train.data import derive_seed
from isthmus.train.distributed import DistInfo, barrier, ddp_wrap, gather_rng, mean_over_ranks, rank_rng, setup
from isthmus.train.grad_noise import GradientNoise
from isthmus.train.loader import LoaderSource, make_source
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


def build_optimizer(
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]], cfg: TrainerConfig
) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` over ``params`` (parameters, or param-group dicts such as ``_decay_groups``)."""
    groups: list[Any] = list(params)
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _decay_groups(model: nn.Module, no_decay: list[str]) -> list[dict[str, Any]]:
    """Two optimizer groups: decayed parameters, and those named by ``no_decay`` (weight decay 0)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    off = [p for n, p in named if any(s in n for s in no_decay)]
    on = [p for n, p in named if not any(s in n for s in no_decay)]
    return [g for g in ({"params": on}, {"params": off, "weight_decay": 0.0}) if g["params"]]


def _clip_groups(model: nn.Module, prefixes: list[str]) -> list[list[nn.Parameter]]:
    """Trainable parameters split by name prefix (first match wins), then the rest; each prefix must match."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups: list[list[nn.Parameter]] = [[] for _ in range(len(prefixes) + 1)]
    for n, p in named:
        groups[next((i for i, pre in enumerate(prefixes) if n.startswith(pre)), len(prefixes))].append(p)
    missing = [pre for pre, g in zip(prefixes, groups) if not g]
    if missing:
        raise ConfigError(
            f"TrainerConfig.grad_clip_groups: no trainable parameter name starts with {missing}; "
            f"names look like {[n for n, _ in named[:4]]}"
        )
    return [g for g in groups if g]


def _clip_each(groups: list[list[nn.Parameter]], clip: float) -> torch.Tensor:
    """Clip each group to norm ``clip``; returns the norm of all gradients before clipping."""
    norms = [torch.nn.utils.clip_grad_norm_(g, clip) for g in groups]
    return norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))


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

    def __init__(
        self, model: nn.Module, config: TrainerConfig | dict | None = None, callbacks: Iterable[Callback] = ()
    ) -> None:
        if not callable(getattr(model, "compute_loss", None)):
            raise TypeError(f"{type(model).__name__} has no compute_loss(batch) method returning a ModelOutput")
        self.model = model
        self.config = TrainerConfig.from_dict(config) if isinstance(config, dict) else (config or TrainerConfig())
        self.user_callbacks = list(callbacks)
        self.device = resolve_device(self.config.device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.callbacks: list[Any] = []
        self.dist = DistInfo()
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
        main = self.dist.is_main  # under torchrun only rank 0 reports and writes files
        if cfg.progress and main:
            cbs.append(ProgressBar(every=cfg.log_every_steps))
        if cfg.log_path and main:
            cbs.append(MetricsLogger(cfg.log_path, every=cfg.log_every_steps))
        if cfg.early_stopping_patience is not None:
            if not has_val:
                raise ConfigError(
                    "TrainerConfig.early_stopping_patience monitors the validation loss; "
                    "pass validation data with fit(train, val=...)"
                )
            cbs.append(EarlyStopping(cfg.early_stopping_patience, cfg.min_delta))
        cbs.extend(self.user_callbacks)
        if cfg.checkpoint_dir:
            cbs.append(Checkpointer(cfg.checkpoint_every_steps))  # last: saves what the others did
        return cbs

    # ---- fit -------------------------------------------------------------------------------------
    def fit(self, train: Any, val: Any = None, resume: bool | str | Path = False) -> TrainResult:
        """Train on ``train`` (validating on ``val`` each epoch); ``resume`` = True/path continues a run.

        ``train``/``val``: a Tensor, array, ``(x, y)`` tuple, table, map-style or iterable torch
        Dataset, or a DataLoader. Runs with 1 thread and flushed denormals unless
        ``config.threads``/``config.runtime_defaults`` say otherwise; the caller's settings come back after.
        """
        with runtime_defaults(self.config.threads, self.config.runtime_defaults):
            return self._fit(train, val, resume)

    def _fit(self, train: Any, val: Any, resume: bool | str | Path) -> TrainResult:
        train_src, val_src, n_batches = self._prepare(train, val, resume)
        hooks = {h: overridden_hooks(self.callbacks, h) for h in HOOKS}
        t0 = time.perf_counter()
        try:
            for fn in hooks["on_fit_start"]:
                fn(self)
            self._run_epochs(train_src, val_src, n_batches, hooks)
            if self.dist.active:
                barrier()  # ranks leave fit together, after rank 0's last checkpoint
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            for fn in hooks["on_fit_end"]:
                fn(self)
        if self.config.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return TrainResult(
            history=self.history,
            best_val_loss=self.best_val_loss,
            best_epoch=self.best_epoch,
            steps=self.global_step,
            stopped_early=self.should_stop,
            runtime_s=time.perf_counter() - t0,
        )

    def _prepare(self, train: Any, val: Any, resume: bool | str | Path) -> tuple[Any, Any, int | None]:
        """Process group, data, optimizer, schedule, noise, callbacks; then a resume or fresh seeding."""
        cfg = self.config
        self.dist = setup(self.device)
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if cfg.batch_size % self.dist.world:
            raise ConfigError(
                f"TrainerConfig.batch_size={cfg.batch_size} is the global batch under torchrun; make it "
                f"a multiple of the {self.dist.world} processes"
            )
        eval_bs = cfg.eval_batch_size or max(4 * cfg.batch_size, 256)
        train_src = make_source(
            train, self.device, cfg.batch_size // self.dist.world, cfg.num_workers, cfg.pin_memory, self.dist.world
        )
        val_src = make_source(val, self.device, eval_bs, cfg.num_workers, cfg.pin_memory) if val is not None else None
        self._reset_run_state()
        self.model.to(self.device)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._clip_parts = _clip_groups(self.model, cfg.grad_clip_groups) if cfg.grad_clip_groups else [self._params]
        self.optimizer = build_optimizer(_decay_groups(self.model, cfg.no_decay) if cfg.no_decay else self._params, cfg)
        self._forward: Callable[[Any], Any] = (
            ddp_wrap(self.model, self.device) if self.dist.active else cast(Any, self.model).compute_loss
        )
        self._n_train, n_batches = self._count(train_src)
        self.total_steps = cfg.epochs * n_batches if n_batches is not None else 0
        self._schedule = LRSchedule(self.optimizer, self.total_steps, cfg.schedule, cfg.warmup_steps)
        self._noise = (
            GradientNoise(cfg.grad_noise_eta, cfg.grad_noise_gamma, derive_seed(cfg.seed, 1), self.device)
            if cfg.grad_noise_eta > 0
            else None
        )
        self.callbacks = self._build_callbacks(val_src is not None)
        source = self._resume_source(resume)
        if source is not None:
            self._load(source)
        else:  # ranks > 0 draw their own dropout/sampling noise
            seed_everything(cfg.seed if self.dist.rank == 0 else derive_seed(cfg.seed, 3, self.dist.rank))
        self._schedule.apply(self.global_step)  # the config's lr wins over the checkpoint's
        return train_src, val_src, n_batches

    def _count(self, src: Any) -> tuple[int, int | None]:
        """``(samples, batches per epoch)``; -1 / None for streams of unknown length."""
        cfg = self.config
        try:
            n = len(src)
        except TypeError:
            n = -1
        self._drop_last = cfg.drop_last
        if self.dist.active and not isinstance(src, LoaderSource) and n % cfg.batch_size and not cfg.drop_last:
            # equal shares per rank keep the DDP gradient mean equal to the global-batch mean
            warnings.warn(
                f"under torchrun the last incomplete batch ({n % cfg.batch_size} of {n} samples) is "
                "dropped each epoch (drop_last)",
                stacklevel=5,
            )
            self._drop_last = True
        n_batches = src.num_batches(cfg.batch_size, self._drop_last)
        if n_batches == 0:
            raise ValueError(f"{n} samples make no full batch of {cfg.batch_size} with drop_last=True")
        if n_batches is None and cfg.schedule != "constant":
            raise ConfigError(
                f"schedule={cfg.schedule!r} needs the number of steps, but the training stream has no "
                "length; give the dataset a __len__ or use schedule='constant'"
            )
        return n, n_batches

    def _run_epochs(self, train_src: Any, val_src: Any, n_batches: int | None, hooks: dict[str, list]) -> None:
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

    def _train_epoch(self, src: Any, n_batches: int | None, step_hooks: list) -> None:
        """The hot loop: keep per-step Python work and syncs to a minimum."""
        cfg, model, opt, params = self.config, self.model, self.optimizer, self._params
        assert opt is not None, "_prepare builds the optimizer"
        model.train()
        batches = src.epoch_batches(
            self.epoch,
            self.step_in_epoch,
            cfg.batch_size,
            shuffle=cfg.shuffle,
            seed=cfg.seed,
            drop_last=self._drop_last,
            rank=self.dist.rank,
            world=self.dist.world,
        )
        forward, amp, synced = self._forward, self._autocast(), self.dist.active
        set_step = getattr(model, "set_step", None)
        schedule = None if self._schedule.is_constant else self._schedule
        clip, noise, meter = cfg.grad_clip, self._noise, self.meter
        norm_every = cfg.log_every_steps if cfg.log_path else 0
        flush_every = cfg.log_every_steps
        checked = False
        for i, (batch, size) in enumerate(batches, start=self.step_in_epoch):
            gs = self.global_step
            if set_step is not None:
                set_step(gs)
            if schedule is not None:
                schedule.apply(gs)
            if amp is None:
                out = forward(batch)
            else:
                with amp:
                    out = forward(batch)
            if not checked:  # before reading .loss, so a wrong return type gets the helpful message
                _check_output(out, model)
                checked = True
            loss = out.loss
            terms = out.losses
            if synced:  # every rank logs, and checks finiteness on, the mean over ranks
                value, terms = mean_over_ranks(loss, terms)
            else:
                value = loss.item()  # the loop's one sync
            if not math.isfinite(value):
                raise self._nonfinite(value, out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                self.last_grad_norm = _clip_each(self._clip_parts, clip)
            elif norm_every and (gs + 1) % norm_every == 0:
                self.last_grad_norm = _grad_norm(params)
            if noise is not None:
                noise.apply(params, gs)
            opt.step()
            self.global_step = gs + 1
            self.step_in_epoch = i + 1
            self.last_loss, self.last_output = value, out
            meter.add(value, terms, size)
            if self.global_step % flush_every == 0:
                meter.flush()
            for fn in step_hooks:
                fn(self)

    def _autocast(self) -> Any:
        """The autocast context of ``config.precision`` (reusable), or None for fp32."""
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return None

    def _end_epoch(self, val_src: Any, epoch_hooks: list) -> None:
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
        assert self.optimizer is not None, "_prepare builds the optimizer"
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
        cfg = self.config
        bs = cfg.eval_batch_size or max(4 * cfg.batch_size, 256)
        return self._evaluate(make_source(data, self.device, bs, cfg.num_workers, cfg.pin_memory))

    @torch.no_grad()
    def _evaluate(self, src: Any) -> dict[str, float]:
        """Every rank evaluates all of ``src`` (same weights, same numbers): no collective needed."""
        was_training = self.model.training
        self.model.eval()
        meter = LossMeter()
        bs = self.config.eval_batch_size or max(4 * self.config.batch_size, 256)
        amp = self._autocast()
        try:
            for batch, size in src.eval_batches(bs):
                with amp if amp is not None else contextlib.nullcontext():
                    out = cast(Any, self.model).compute_loss(batch)
                meter.add(float(out.loss), out.losses, size)
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
        name = ckpt.checkpoint_name(self.global_step, epoch_end)
        rng_ranks = None
        if self.dist.active:  # a collective: every rank's RNG goes into rank 0's checkpoint
            rng_tensors, rng_ranks = gather_rng(rng_tensors, rng_meta)
            if not self.dist.is_main:
                return Path(cfg.checkpoint_dir) / name
        state = {
            "isthmus_version": __version__,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "epoch_done": self.epoch_done,
            "global_step": self.global_step,
            "n_train": self._n_train,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "stopped_early": self.should_stop,
            "history": self.history,
            "meter": self.meter.state_dict(),
            "callbacks": {
                cb.state_key: cb.state_dict()
                for cb in self.callbacks
                if hasattr(cb, "state_dict") and hasattr(cb, "state_key")
            },
            "config": cfg.to_dict(),
            "rng": rng_meta,
            "world_size": self.dist.world,
            "rng_ranks": rng_ranks,
        }
        return ckpt.save_checkpoint(
            cfg.checkpoint_dir,
            name,
            model_state=self.model.state_dict(),
            optimizer=self.optimizer,
            rng_tensors=rng_tensors,
            state=state,
            best_model=self._best_state,
            keep=cfg.keep_checkpoints,
        )

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
        assert self.optimizer is not None, "_prepare builds the optimizer before a resume"
        ckpt.optimizer_from_flat(self.optimizer, c.optimizer["tensors"], c.optimizer["meta"], str(path))
        self._restore_rng(c.rng_tensors, s)
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

    def _restore_rng(self, tensors: dict[str, torch.Tensor], s: dict[str, Any]) -> None:
        gens = self._rng_generators()
        own = rank_rng(tensors, s, self.dist.rank)
        if own is not None:
            restore_rng(*own, gens)
            return
        warnings.warn(
            f"the checkpoint holds no RNG state for rank {self.dist.rank}; it reseeds, so stochastic "
            "layers will not replay the uninterrupted run",
            stacklevel=4,
        )
        restore_rng(tensors, s["rng"], gens)  # grad-noise generator must match rank 0's
        seed_everything(derive_seed(self.config.seed, 3, self.dist.rank, self.global_step))


def _check_output(out: Any, model: nn.Module) -> None:
    loss = getattr(out, "loss", None)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not isinstance(getattr(out, "losses", None), dict):
        raise TypeError(
            f"{type(model).__name__}.compute_loss must return a ModelOutput with a scalar tensor .loss and "
            f"a dict .losses; got {type(out).__name__} with loss={loss!r:.80}"
        )
