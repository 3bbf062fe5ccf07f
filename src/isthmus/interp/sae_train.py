"""``train_sae``: the SAE training loop, resumable through the Trainer's checkpoint machinery.

One way to resume in the library: checkpoints are written by :func:`isthmus.train.checkpoint.save_checkpoint`
(atomic safetensors + JSON folders, ``latest.json`` pointer, pruning) with the RNG captured by
:mod:`isthmus.train.rng`, exactly as :class:`~isthmus.train.Trainer` does. What is SAE-specific is the
state: the step, the data position (the row sampler's generator for a tensor; epoch and batches
consumed for a store or an iterable, replayed on resume), the history and the JSONL log's length.
Resuming after a SIGKILL reproduces the uninterrupted run bit for bit (``tests/test_sae_resume.py``).

Every batch is moved to the SAE's device and dtype (a store on disk feeding an SAE on CUDA works);
``autocast="bfloat16"`` runs the forward under :func:`torch.autocast` while parameters and Adam
state stay float32.

Under ``torchrun`` the N processes train one SAE data-parallel (DDP from :mod:`isthmus.train.distributed`,
the Trainer's): ``batch_size`` is the global batch, each rank takes its slice of the batch one process
would draw, and rank 0 alone logs, shows progress and checkpoints. Every rank's RNG follows the same
stream, so rank 0's checkpoint resumes any number of ranks exactly. Details: :mod:`isthmus.interp.sae_ddp`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from isthmus._runtime import configure
from isthmus.config import Config, ConfigError
from isthmus.interp import sae_ddp
from isthmus.interp.precision import DTYPES, autocast
from isthmus.interp.sae import SparseAutoEncoder
from isthmus.io import CheckpointError
from isthmus.train import checkpoint as ckpt
from isthmus.train.distributed import DistInfo, all_mean, barrier, ddp_wrap, setup
from isthmus.train.rng import capture_rng, restore_rng

__all__ = ["SAETrainConfig", "train_sae", "resample_dead_latents", "BatchSource"]

KIND = "sparse_autoencoder"
# fields that may differ between the run that wrote a checkpoint and the run resuming it
_RESUME_FREE = {"checkpoint_dir", "checkpoint_every", "keep_checkpoints", "log_path", "progress", "log_every"}


@dataclass
class SAETrainConfig(Config):
    """Knobs of :func:`train_sae`: Adam, linear LR warm-up, linear decay over the last
    ``decay_fraction`` of ``steps``, optional dead-latent resampling every ``resample_every`` steps;
    ``autocast`` (float32 | bfloat16 | float16) for the forward; checkpoints every
    ``checkpoint_every`` steps into ``checkpoint_dir``; a JSONL log at ``log_path``."""

    steps: int = 1000
    batch_size: int = 1024
    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    decay_fraction: float = 0.2
    grad_clip: float | None = None
    resample_every: int = 0
    init_b_dec: bool = True
    fused_adam: bool = True  # torch's fused Adam: one kernel per tensor (≈2× less optimizer time on CPU)
    seed: int = 0
    log_every: int = 100
    autocast: str = "float32"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0  # steps; 0 = only at the end (when checkpoint_dir is set)
    keep_checkpoints: int = 2
    log_path: str | None = None
    progress: bool = False

    def validate(self) -> None:
        name = type(self).__name__
        if self.steps < 1 or self.batch_size < 1 or self.log_every < 1:
            raise ConfigError(f"{name}: steps, batch_size and log_every must be >= 1")
        if self.autocast not in DTYPES:
            raise ConfigError(f"{name}.autocast must be one of {sorted(DTYPES)}, got {self.autocast!r}")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ConfigError(f"{name}: checkpoint_every must be >= 0 and keep_checkpoints >= 1")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ConfigError(f"{name}.checkpoint_every={self.checkpoint_every} needs checkpoint_dir")


class BatchSource:
    """Endless (B, d) batches from a tensor (random rows), a store (``iter_batches``) or an iterable,
    with a saveable position: the sampler generator for a tensor, (epoch, batches taken) otherwise.

    With ``dist`` (under torchrun) every rank draws the same global batch and returns its slice; a
    batch that does not split evenly over the ranks is skipped (see :mod:`isthmus.interp.sae_ddp`)."""

    def __init__(self, data: Any, batch_size: int, seed: int, dist: DistInfo | None = None) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.dist = dist or DistInfo()
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch, self.taken = 0, 0
        self._it: Iterator[Any] | None = None

    def _epoch_iter(self) -> Iterator[Any]:
        if hasattr(self.data, "iter_batches"):
            return iter(self.data.iter_batches(self.batch_size, shuffle=True, seed=self.seed + self.epoch))
        return iter(self.data)

    def __next__(self) -> Any:
        if not self.dist.active:
            return self._next_global()
        for _ in range(3):  # at most one short batch per epoch end is skipped
            batch = self._next_global()
            if sae_ddp.rows_of(batch) % self.dist.world == 0:
                return sae_ddp.share(batch, self.dist)
        raise ValueError(
            f"the activation batches do not split evenly over {self.dist.world} processes; "
            f"use batches whose size is a multiple of {self.dist.world}"
        )

    def _next_global(self) -> Any:
        if isinstance(self.data, torch.Tensor):
            rows = torch.randint(0, self.data.shape[0], (self.batch_size,), generator=self.gen)
            return self.data[rows.to(self.data.device)]
        if _tensor_pair(self.data):  # (inputs, targets) of a transcoder: the same rows of both
            x, y = self.data
            rows = torch.randint(0, x.shape[0], (self.batch_size,), generator=self.gen)
            return x[rows.to(x.device)], y[rows.to(y.device)]
        for _ in range(2):
            if self._it is None:
                self._it = self._epoch_iter()
                for _ in range(self.taken):  # replay to the saved position (a resumed run)
                    if next(self._it, None) is None:
                        raise CheckpointError(
                            "the activation source is shorter than when the checkpoint was "
                            "written; resume with the same data"
                        )
            b = next(self._it, None)
            if b is not None:
                self.taken += 1
                return b
            if self.taken == 0:
                raise ValueError("the activation source yielded no batches")
            self.epoch, self.taken, self._it = self.epoch + 1, 0, None
        raise ValueError("the activation source yielded no batches")

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "taken": self.taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.taken, self._it = int(state["epoch"]), int(state["taken"]), None


def _tensor_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
        and data[0].shape[0] == data[1].shape[0]
    )


def _split(batch: Any, transcoder: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input, target or None): a transcoder needs (x, y) pairs; an SAE ignores anything after x."""
    if isinstance(batch, dict):
        batch = batch["activations"]
    if isinstance(batch, (tuple, list)):
        x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        x, y = batch, None
    if transcoder and y is None:
        raise ValueError(
            "a Transcoder trains on (input, target) pairs: pass (X, Y) tensors or an iterable of "
            "(x, y) batches (e.g. isthmus.interp.store.PairedStores)"
        )
    return x, (y if transcoder else None)


def _lr_factor(step: int, cfg: SAETrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    decay_start = int(cfg.steps * (1 - cfg.decay_fraction))
    if step >= decay_start and cfg.decay_fraction > 0:
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - decay_start))
    return 1.0


def _row(
    step: int, out: Any, x: torch.Tensor, sae: SparseAutoEncoder, lr: float, tokens: int, tokens_per_s: float
) -> dict[str, float]:
    """The logged record of one step: losses, L0, FVU, dead fraction, lr, tokens and tokens/s."""
    with torch.no_grad():
        xf, rf = x.float(), out.recon.float()
        fvu = float((xf - rf).pow(2).sum() / (xf - xf.mean(0)).pow(2).sum().clamp_min(1e-12))
        stats = {k: float(v) for k, v in out.stats.items() if torch.as_tensor(v).numel() == 1}
        if "l0" not in stats and out.latent is not None:
            stats["l0"] = float((out.latent != 0).sum(1).float().mean())
        stats["dead_fraction"] = float(sae.bottleneck.dead_mask().float().mean())
    return {
        "step": step,
        "loss": float(out.loss.detach()),
        **{k: float(v.detach()) for k, v in out.losses.items()},
        **stats,
        "fvu": fvu,
        "lr": lr,
        "tokens": tokens,
        "tokens_per_s": round(tokens_per_s, 1),
    }


class _JsonlLog:
    """Append-only JSONL file; a resumed run truncates it to its length at the checkpoint."""

    def __init__(self, path: str | None, resume_bytes: int | None) -> None:
        self.fh = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if resume_bytes is not None and Path(path).exists():
                with open(path, "r+b") as fh:
                    fh.truncate(resume_bytes)
                self.fh = open(path, "ab")
            else:
                self.fh = open(path, "wb")

    def write(self, row: dict) -> None:
        if self.fh is not None:
            self.fh.write((json.dumps(row) + "\n").encode())
            self.fh.flush()

    def tell(self) -> int:
        return self.fh.tell() if self.fh is not None else 0

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _resume_state(sae: SparseAutoEncoder, cfg: SAETrainConfig, resume: bool | str | Path) -> ckpt.Checkpoint | None:
    if not resume:
        return None
    if resume is True:
        if not cfg.checkpoint_dir:
            raise ConfigError("train_sae(resume=True) needs SAETrainConfig.checkpoint_dir")
        path = ckpt.find_latest(cfg.checkpoint_dir)
        if path is None:
            return None  # nothing written yet (killed before the first checkpoint): start afresh
    else:
        path = Path(resume)
    c = ckpt.load_checkpoint(path)
    s = c.state
    if s.get("kind") != KIND:
        raise CheckpointError(
            f"{path} is not a train_sae checkpoint (kind {s.get('kind')!r}); resume "
            "Trainer checkpoints with Trainer.fit(resume=...)"
        )
    if s["sae_config"] != sae.config.to_dict():
        raise CheckpointError(f"{path} holds an SAE with config {s['sae_config']}, not {sae.config.to_dict()}")
    now = cfg.to_dict()
    diff = sorted(k for k in now if k not in _RESUME_FREE and json.dumps(now[k]) != json.dumps(s["config"].get(k)))
    if diff:
        raise CheckpointError(
            f"{path} was written with different training settings ({diff}); resume with "
            "the same SAETrainConfig (only checkpoint/log/progress fields may change)"
        )
    return c


def train_sae(
    sae: SparseAutoEncoder,
    data: Any,
    config: SAETrainConfig | None = None,
    log: Callable[[dict], None] | None = None,
    resume: bool | str | Path = False,
) -> list[dict[str, float]]:
    """Train ``sae`` on activations: a (N, d) tensor, an ``ActivationStore`` (``iter_batches``) or any
    re-iterable of (B, d) tensors; a :class:`~isthmus.interp.transcoder.Transcoder` on an ``(X, Y)`` tensor
    pair or (x, y) batches. Returns the logged history (one row per ``log_every`` steps).

    ``resume=True`` continues from the latest checkpoint in ``config.checkpoint_dir`` (or starts fresh
    when there is none); a folder path resumes from that checkpoint. An iterable source must yield
    the same batches in the same order when iterated again (a store or a list does).

    Under ``torchrun`` every rank calls this with the same arguments; ``log`` is called on rank 0
    only, and every rank returns the same (rank-averaged) history."""
    cfg = config or SAETrainConfig()
    configure()  # thread count and denormal flushing (see isthmus._runtime)
    param = sae.W_enc
    device, dtype = param.device, param.dtype
    info = _join(device, cfg)
    main = info.is_main  # under torchrun only rank 0 logs, shows progress and checkpoints
    transcoder = bool(getattr(sae, "is_transcoder", False))
    torch.manual_seed(cfg.seed)  # the same on every rank: resampling draws the same numbers everywhere
    source = BatchSource(data, cfg.batch_size, cfg.seed, info)
    fused = cfg.fused_adam and device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.betas, fused=fused or None)
    history: list[dict[str, float]] = []
    start, tokens_before, log_bytes = 0, 0, None
    c = _resume_state(sae, cfg, resume)
    if c is not None:
        sae.load_state_dict({k: v.to(device) for k, v in c.model.items()})
        ckpt.optimizer_from_flat(opt, c.optimizer["tensors"], c.optimizer["meta"], str(c.path))
        restore_rng(c.rng_tensors, c.state["rng"], {"sampler": source.gen})
        source.load_state_dict(c.state["data"])
        start, history, log_bytes = int(c.state["global_step"]), list(c.state["history"]), c.state["log_bytes"]
        tokens_before = start * cfg.batch_size
    writer = _JsonlLog(cfg.log_path if main else None, log_bytes)
    forward = ddp_wrap(sae, device) if info.active else sae.compute_loss  # DDP: gradients averaged in backward
    bar = None
    if cfg.progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, unit="step", desc="sae train")

    def save(step: int) -> None:
        assert cfg.checkpoint_dir is not None  # called only when checkpointing
        rng_tensors, rng_meta = capture_rng({"sampler": source.gen})
        state = {
            "kind": KIND,
            "global_step": step,
            "history": history,
            "config": cfg.to_dict(),
            "sae_config": sae.config.to_dict(),
            "data": source.state_dict(),
            "rng": rng_meta,
            "log_bytes": writer.tell(),
            "world_size": info.world,
        }
        ckpt.save_checkpoint(
            cfg.checkpoint_dir,
            ckpt.checkpoint_name(step, step == cfg.steps),
            model_state=sae.state_dict(),
            optimizer=opt,
            rng_tensors=rng_tensors,
            state=state,
            keep=cfg.keep_checkpoints,
        )

    sae.train()
    t0 = time.perf_counter()
    try:
        for step in range(start, cfg.steps):
            x, y = _split(next(source), transcoder)
            x = x.to(device=device, dtype=dtype, non_blocking=True)  # stores may hold bf16, live on CPU
            y = None if y is None else y.to(device=device, dtype=dtype, non_blocking=True)
            if step == 0 and cfg.init_b_dec:
                sae.init_b_dec_(x if y is None else y)
                if info.active:  # the mean of equal slices' means: the global batch mean
                    sae.b_dec.data.copy_(all_mean(sae.b_dec.data))
            sae.set_step(step)
            lr = cfg.lr * _lr_factor(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(device, cfg.autocast):
                out = forward(x if y is None else (x, y))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            if info.active:
                sae_ddp.sync_dead_counters(sae)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
            opt.step()
            sae.normalize_decoder_()
            if cfg.resample_every and (step + 1) % cfg.resample_every == 0 and y is None:
                if info.active:
                    resample_dead_latents(sae, sae_ddp.gather_batch(x), opt)
                    sae_ddp.broadcast_resampled(sae, opt)
                else:
                    resample_dead_latents(sae, x, opt)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                tokens, seconds = (step + 1) * cfg.batch_size, time.perf_counter() - t0
                row = _row(
                    step + 1, out, x if y is None else y, sae, lr, tokens, (tokens - tokens_before) / max(seconds, 1e-9)
                )
                row = sae_ddp.mean_row(row) if info.active else row
                history.append(row)
                writer.write({**row, "time_s": round(time.perf_counter() - t0, 4)})
                if log is not None and main:
                    log(row)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
                    bar.set_postfix(
                        tok_s=f"{row['tokens_per_s']:.3g}",
                        l0=f"{row.get('l0', float('nan')):.1f}",
                        fvu=f"{row['fvu']:.3f}",
                        dead=f"{row['dead_fraction']:.2f}",
                    )
            if (
                main
                and cfg.checkpoint_dir
                and ((cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0) or step + 1 == cfg.steps)
            ):
                save(step + 1)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    if info.active:
        barrier()  # ranks leave together, after rank 0's last checkpoint
    sae.eval()
    return history


def _join(device: torch.device, cfg: SAETrainConfig) -> DistInfo:
    """This process's place in a torchrun job (joining the process group once); checks the global batch."""
    info = setup(device)
    if not info.active:
        return info
    if cfg.batch_size % info.world:
        raise ConfigError(
            f"SAETrainConfig.batch_size={cfg.batch_size} is the global batch; make it a multiple "
            f"of the {info.world} processes"
        )
    if device.type == "cuda":
        if device.index != info.local_rank:
            raise ConfigError(
                f"rank {info.rank} trains on {device}; put the SAE on cuda:{info.local_rank} "
                "(its LOCAL_RANK) before train_sae"
            )
        torch.cuda.set_device(device)
    return info


@torch.no_grad()
def resample_dead_latents(
    sae: SparseAutoEncoder,
    x: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    dead: torch.Tensor | None = None,
    encoder_scale: float = 0.2,
) -> int:
    """Re-initialise dead latents (Anthropic "Towards Monosemanticity" resampling, simplified): each
    dead latent's decoder row becomes a residual direction of an input drawn with probability ∝ its
    squared reconstruction error; its encoder row is that direction times ``encoder_scale`` × the mean
    alive encoder norm; its bias is 0 and its Adam moments are cleared. Returns how many were resampled."""
    dead = sae.bottleneck.dead_mask() if dead is None else dead
    idx = dead.nonzero().squeeze(1)
    if idx.numel() == 0:
        return 0
    was = sae.training
    sae.eval()
    err = x - sae(x).recon
    sae.train(was)
    w = err.pow(2).sum(1)
    probs = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / w.numel())
    pick = torch.multinomial(probs, idx.numel(), replacement=idx.numel() > x.shape[0])
    dirs = err[pick]
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = ~dead
    enc_norm = sae.W_enc[alive].norm(dim=1).mean() if bool(alive.any()) else torch.tensor(1.0)
    sae.W_dec[idx] = dirs
    sae.W_enc[idx] = dirs * encoder_scale * enc_norm
    sae.b_enc[idx] = 0.0
    sae.bottleneck.steps_since_fired[idx] = 0
    if optimizer is not None:
        for p in (sae.W_dec, sae.W_enc, sae.b_enc):
            state = optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][idx] = 0.0
    return int(idx.numel())
