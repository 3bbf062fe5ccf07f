"""Train an autoencoder from one typed config: data → scaler → model → Trainer → model folder.

This is what ``isthmus train`` runs, and what ``evaluate``/``encode``/``reconstruct`` read back.
A run folder holds ``model/`` (``config.json`` + ``model.safetensors``), ``scaler.json``,
``run_config.json``, ``metrics.json`` and ``train_log.jsonl`` — all JSON or safetensors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.config import Config, ConfigError
from isthmus.data import (
    DataError,
    Scaler,
    Table,
    load_digits,
    load_mnist,
    load_table,
    make_scaler,
    make_shapes,
    train_val_split,
)
from isthmus.io import CheckpointError, atomic_write_json, read_json
from isthmus.models import AutoEncoder, ObjectiveConfig
from isthmus.train import Callback, Trainer, TrainerConfig
from isthmus.train.distributed import is_main_process

__all__ = [
    "DataSection",
    "ModelSection",
    "RunConfig",
    "TrainedRun",
    "load_source",
    "build_model",
    "train_autoencoder",
    "load_run",
    "load_schema",
    "match_schema",
    "reconstruction_metrics",
]

BUILTIN_SOURCES = ("digits", "shapes", "mnist")


@dataclass
class DataSection(Config):
    """Where the data comes from: a built-in name (``digits``, ``shapes``, ``mnist``) or a path."""

    source: str = "digits"
    columns: list[str] | None = None
    label_column: str | None = None
    val_fraction: float = 0.2
    scaler: str = "auto"  # auto | standard | minmax | none
    seed: int = 0
    limit: int | None = None

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.scaler not in ("auto", "standard", "minmax", "none"):
            raise ConfigError(f"data.scaler: {self.scaler!r} not in ['auto', 'standard', 'minmax', 'none']")
        if self.limit is not None and self.limit < 2:
            raise ConfigError(f"data.limit must be >= 2, got {self.limit}")


@dataclass
class ModelSection(Config):
    """Architecture: an MLP or conv autoencoder around any registered bottleneck."""

    kind: str = "mlp"  # mlp | conv
    latent_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    activation: str = "gelu"
    out_activation: str = "identity"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    bottleneck: str = "identity"
    bottleneck_config: dict[str, Any] = field(default_factory=dict)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self) -> None:
        if self.kind not in ("mlp", "conv"):
            raise ConfigError(f"model.kind must be 'mlp' or 'conv', got {self.kind!r}")


@dataclass
class RunConfig(Config):
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str = "runs/train"


@dataclass
class TrainedRun:
    model: AutoEncoder
    scaler: Scaler
    train: Table
    val: Table
    metrics: dict[str, float]
    history: list[dict]
    out_dir: Path | None = None


def load_source(section: DataSection) -> Table:
    """Load the data a :class:`DataSection` names."""
    src = section.source
    if src == "digits":
        table = load_digits()
    elif src == "shapes":
        table = make_shapes(n=section.limit or 5000, image_size=32, seed=section.seed)
    elif src == "mnist":
        table = load_mnist()
    else:
        kw: dict[str, Any] = {}
        if Path(src).suffix.lower() in (".csv", ".tsv", ".parquet", ".pq", ".gz") and not src.endswith("ubyte.gz"):
            kw = {"columns": section.columns, "label_column": section.label_column}
        table = load_table(src, **kw)
    if section.limit is not None and len(table) > section.limit:
        table = table.subset(np.arange(section.limit))
    return table


def _resolve_scaler(name: str, X: np.ndarray) -> Scaler:
    if name == "auto":  # images or data already in [0, 1] keep their scale; other tables are standardised
        name = "none" if X.ndim > 2 or (X.min() >= 0.0 and X.max() <= 1.0) else "standard"
    return make_scaler(name)


def build_model(section: ModelSection, sample_shape: tuple[int, ...]) -> AutoEncoder:
    """Build the autoencoder of ``section`` for samples of shape ``sample_shape``."""
    bn = {"type": section.bottleneck, "config": {"latent_dim": section.latent_dim, **section.bottleneck_config}}
    if section.kind == "conv":
        if len(sample_shape) != 3 or sample_shape[1] != sample_shape[2]:
            raise ConfigError(
                f"model.kind='conv' needs square images (C, H, H); the data has samples of shape "
                f"{sample_shape}; use model.kind=mlp for tables"
            )
        return AutoEncoder.conv(
            image_size=sample_shape[1],
            in_channels=sample_shape[0],
            channels=section.channels,
            bottleneck=bn,
            out_activation=section.out_activation,
            objective=section.objective,
        )
    return AutoEncoder.mlp(
        int(np.prod(sample_shape)),
        hidden=section.hidden,
        bottleneck=bn,
        activation=section.activation,
        out_activation=section.out_activation,
        objective=section.objective,
    )


@torch.no_grad()
def reconstruction_metrics(model: AutoEncoder, X: np.ndarray, batch_size: int = 2048) -> dict[str, float]:
    """Per-element MSE and PSNR (data range of X) of ``model`` on (already scaled) ``X``."""
    model.eval()
    xt = torch.as_tensor(X, dtype=torch.float32)
    sq = sum(
        float(((model(xt[i : i + batch_size]).recon - xt[i : i + batch_size]) ** 2).sum())
        for i in range(0, len(xt), batch_size)
    )
    mse = sq / xt.numel()
    data_range = float(xt.max() - xt.min()) or 1.0
    return {"mse": mse, "psnr": float(10 * np.log10(data_range**2 / max(mse, 1e-12)))}


def _check_device(device: str) -> None:
    """A CUDA/MPS device the machine lacks is a config error, not torch's AssertionError mid-run."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={device!r} but this torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
            "use trainer.device=auto or trainer.device=cpu"
        )
    if device.startswith("mps") and not torch.backends.mps.is_available():
        raise ConfigError(f"trainer.device={device!r} but MPS is not available here; use trainer.device=auto")


def data_schema(table: Table, cfg: RunConfig) -> dict[str, Any]:
    """What the model was trained on, checked by every later use (``schema.json`` in the run folder)."""
    return {
        "feature_names": table.feature_names,
        "sample_shape": list(table.X.shape[1:]),
        "label_column": cfg.data.label_column,
    }


def match_schema(table: Table, schema: dict[str, Any] | None, source: str) -> Table:
    """``table`` with its columns in the training order, or a :class:`DataError` that says what differs.

    Columns are matched by name: the same names in another order are reordered (with a warning),
    extra columns are dropped (with a warning), missing or renamed ones are an error. Feeding
    columns by position would silently give wrong results.
    """
    if schema is None:
        return table
    want_shape = tuple(schema.get("sample_shape") or ())
    names, have = schema.get("feature_names"), table.feature_names
    if names is not None and have is not None and have != names:
        missing = [n for n in names if n not in have]
        if missing:
            extra = [n for n in have if n not in names]
            raise DataError(
                f"{source}: the model was trained on columns {names}; this data lacks {missing}"
                + (f" and has {extra} instead (renamed?)" if extra else "")
                + "; give it the training columns (any order)"
            )
        extra = [n for n in have if n not in names]
        if extra:
            warnings.warn(f"{source}: ignoring column(s) {extra} the model was not trained on", stacklevel=2)
        else:
            warnings.warn(
                f"{source}: columns are in another order than at training; reordered them by name", stacklevel=2
            )
        idx = [have.index(n) for n in names]
        table = Table(table.X[:, idx], table.y, list(names), table.meta)
    if want_shape and tuple(table.X.shape[1:]) != want_shape:
        raise DataError(
            f"{source}: samples have shape {tuple(table.X.shape[1:])} but the model was trained on {want_shape}"
        )
    return table


def train_autoencoder(
    cfg: RunConfig, save: bool = True, resume: bool = False, callbacks: Sequence[Callback] = ()
) -> TrainedRun:
    """Run the whole pipeline of ``cfg``; with ``save`` write the run folder to ``cfg.out_dir``.

    Under ``torchrun`` every rank trains (DDP) and only rank 0 saves (the others return ``out_dir=None``).

    Saving writes ``run_config.json``, ``scaler.json`` and ``schema.json`` before training and
    checkpoints into ``<out>/checkpoints`` (unless ``trainer.checkpoint_dir`` is set), so a killed run
    continues with ``resume=True`` (CLI: ``--resume``) and a failed final save keeps the weights.
    """
    _check_device(cfg.trainer.device)
    save = save and is_main_process()
    table = load_source(cfg.data)
    train, val = train_val_split(table, val_fraction=cfg.data.val_fraction, seed=cfg.data.seed)
    scaler = _resolve_scaler(cfg.data.scaler, train.X).fit(train.X)
    Xtr, Xva = scaler.transform(train.X), scaler.transform(val.X)
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(cfg.model, tuple(train.X.shape[1:]))
    out = Path(cfg.out_dir)
    tcfg = cfg.trainer
    if save:
        fill = {"log_path": str(out / "train_log.jsonl"), "checkpoint_dir": str(out / "checkpoints")}
        tcfg = tcfg.with_overrides({k: v for k, v in fill.items() if getattr(tcfg, k) is None})
        atomic_write_json(out / "run_config.json", cfg.to_dict())
        atomic_write_json(out / "scaler.json", scaler.to_dict())
        atomic_write_json(out / "schema.json", data_schema(table, cfg))
    trainer = Trainer(model, tcfg, callbacks=callbacks)
    result = trainer.fit(torch.as_tensor(Xtr), torch.as_tensor(Xva), resume=resume)
    metrics = {f"val_{k}": v for k, v in reconstruction_metrics(model, Xva).items()}
    metrics.update({f"train_{k}": v for k, v in reconstruction_metrics(model, Xtr).items()})
    run = TrainedRun(model, scaler, train, val, metrics, list(result.history), out if save else None)
    if save:
        try:
            model.save_pretrained(out / "model", metrics=metrics)
            atomic_write_json(out / "metrics.json", metrics)
        except OSError as exc:
            from isthmus.train.checkpoint import find_latest

            last = find_latest(tcfg.checkpoint_dir) if tcfg.checkpoint_dir else None
            keep = (
                (
                    f"the trained weights are safe in the last checkpoint {last}; fix the cause and run "
                    f"`isthmus train --out {out} --resume` to write the model"
                )
                if last
                else "no checkpoint was kept"
            )
            raise CheckpointError(
                f"training finished but saving the model to {out / 'model'} failed ({exc.strerror or exc}); {keep}"
            ) from exc
    return run


RUN_FILES = ("run_config.json", "scaler.json", "model/config.json", "model/model.safetensors")


def load_run(path: str | Path) -> tuple[AutoEncoder, Scaler, RunConfig | None]:
    """Read back a run folder, complete or refused (a bare model folder loads with an identity scaler).

    A run folder missing its scaler would silently feed unscaled data to the model, so every file
    of :data:`RUN_FILES` must be there.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder; pass a run folder written by `isthmus train`")
    if (path / "config.json").is_file() and not (path / "run_config.json").exists():
        return AutoEncoder.from_pretrained(path), make_scaler("none"), None  # a bare model folder
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        unfinished = (
            set(missing) <= {"model/config.json", "model/model.safetensors"} and (path / "checkpoints").is_dir()
        )  # the model is written last
        hint = (
            f"; training did not finish: continue it with `isthmus train --out {path} --resume`"
            if unfinished
            else "; copy the whole run folder, or re-train"
        )
        raise CheckpointError(f"{path} is not a complete run folder: missing {missing}{hint}")
    model = AutoEncoder.from_pretrained(path / "model")
    scaler = Scaler.from_dict(read_json(path / "scaler.json"))
    cfg = RunConfig.from_dict(read_json(path / "run_config.json"))
    return model, scaler, cfg


def load_schema(path: str | Path) -> dict[str, Any] | None:
    """The run's ``schema.json`` (None for runs saved before it existed)."""
    path = Path(path) / "schema.json"
    return read_json(path) if path.is_file() else None
