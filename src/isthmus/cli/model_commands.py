"""``isthmus train | evaluate | encode | reconstruct``: the model lifecycle from the shell.

``train`` takes a YAML/JSON run config (see ``examples/configs/``) plus ``key=value`` overrides
with dotted keys (``trainer.epochs=5 model.bottleneck=gaussian``); the config dataclass *is*
the CLI, so every field is reachable. The other commands read a run folder written by ``train``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isthmus.cli.run_folder import add_run_folder_flags

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an autoencoder from a config file and key=value overrides",
        description="Train an autoencoder. CONFIG is a YAML/JSON run config (optional: defaults train the "
        "default MLP autoencoder on scikit-learn digits). Overrides use dotted keys, e.g. "
        "trainer.epochs=5 model.latent_dim=4 model.bottleneck=gaussian data.source=my.csv.",
    )
    p.add_argument("config", nargs="?", type=Path, help="run config (.yaml/.yml/.json)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides with dotted keys")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="run folder (overrides out_dir); refused if not empty unless --overwrite or --resume",
    )
    add_run_folder_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (same as trainer.progress=false)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "--log-to",
        action="append",
        default=[],
        choices=("tensorboard", "mlflow"),
        help="also send the JSONL log to TensorBoard (<out>/tensorboard) or MLflow (<out>/mlruns); "
        "repeatable; needs pip install 'isthmus[tracking]'",
    )
    p.epilog = (
        "Checkpoints go to OUT/checkpoints after every epoch; a killed run continues exactly where it "
        "stopped with `isthmus train --out OUT --resume` (the config is read back from the folder). "
        "The seed is trainer.seed (default 0); the same command gives the same model."
    )
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "evaluate",
        help="reconstruction metrics of a trained run on data",
        description="Print reconstruction MSE/PSNR and every loss term on DATA.",
    )
    _run_and_data(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "encode",
        help="write latent codes of data to .npy or .parquet",
        description="Encode DATA with a trained run; write latents (N, latent_dim).",
    )
    _run_and_data(p)
    p.add_argument(
        "--output", "-o", type=Path, required=True, metavar="FILE", help="output file: .npy, .parquet or .csv"
    )
    p.set_defaults(func=cmd_encode)

    p = subparsers.add_parser(
        "reconstruct",
        help="save a PNG grid of inputs and reconstructions",
        description="Reconstruct the first N samples of DATA and save a PNG grid.",
    )
    _run_and_data(p)
    p.add_argument("--output", "-o", type=Path, required=True, metavar="FILE", help="output PNG")
    p.add_argument("-n", type=int, default=10, help="number of samples (default 10)")
    p.add_argument("--image-shape", default=None, help="H,W for flat tabular samples (default: square)")
    p.set_defaults(func=cmd_reconstruct)


def _run_and_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="run folder written by `isthmus train` (or a model folder)")
    p.add_argument(
        "--data", default=None, help="data: digits | shapes | mnist | a path (default: the run's own validation split)"
    )


def _columns_of(path: str) -> list[str] | None:
    """Column names of a CSV/Parquet file without reading its rows (None for other sources)."""
    p = Path(path)
    name = p.name.lower().removesuffix(".gz")
    if not p.is_file():
        return None
    try:
        if name.endswith((".csv", ".tsv")):
            import pandas as pd

            return [str(c) for c in pd.read_csv(p, nrows=0, sep="\t" if name.endswith(".tsv") else ",").columns]
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return list(pq.read_schema(p).names)
    except Exception:  # unreadable: let the real loader report it properly
        return None
    return None


def _load(args: argparse.Namespace):
    """Model, scaler and the (scaled) data an evaluate/encode/reconstruct command works on.

    New data is matched to the training columns by name (reordered if needed, refused if a column
    is missing); a label column the run was trained with is optional on new (unlabelled) data.
    """
    from isthmus.data import train_val_split
    from isthmus.tasks.autoencoding import (
        DataSection,
        load_run,
        load_schema,
        load_source,
        match_schema,
    )

    model, scaler, cfg = load_run(args.run)
    schema = load_schema(args.run)
    if args.data is None:
        if cfg is None:
            raise ValueError(f"{args.run} has no run_config.json; pass --data")
        _, table = train_val_split(load_source(cfg.data), val_fraction=cfg.data.val_fraction, seed=cfg.data.seed)
    else:
        section = cfg.data.with_overrides({"source": args.data}) if cfg else DataSection(source=args.data)
        cols = _columns_of(args.data)
        if cols is not None and section.label_column is not None and section.label_column not in cols:
            section = section.with_overrides({"label_column": None})  # unlabelled new data
        names = (schema or {}).get("feature_names")
        if cols is not None and names and all(n in cols for n in names):
            section = section.with_overrides({"columns": names})  # by name, in training order
        table = load_source(section)
    table = match_schema(table, schema, str(args.data or args.run))
    return model, scaler, table, scaler.transform(table.X)


def _saved_config(out: Path):
    from isthmus.tasks.autoencoding import RunConfig

    saved = out / "run_config.json"
    if not saved.is_file():
        raise ValueError(
            f"--resume: {out} has no run_config.json, so it holds no run to continue; drop --resume to start one"
        )
    from isthmus.io import read_json

    return RunConfig.from_dict(read_json(saved))


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += _config_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            diffs.append(f"{prefix}{key}: {va!r} (saved) vs {vb!r}")
    return diffs


def cmd_train(args: argparse.Namespace) -> int:
    from isthmus.cli.run_folder import claim_run_folder
    from isthmus.tasks.autoencoding import RunConfig

    overrides = list(args.overrides)
    key = str(args.config).partition("=")[0] if args.config is not None else ""
    if args.config is not None and "=" in str(args.config) and "/" not in key and not args.config.exists():
        overrides.insert(0, str(args.config))  # no config file given: the first word is an override
        args.config = None
    if args.resume and args.config is None and not overrides:
        if args.out is None:
            raise ValueError("--resume needs the run folder: isthmus train --out DIR --resume")
        cfg = _saved_config(args.out)  # `isthmus train --out DIR --resume`: the folder knows its config
    else:
        cfg = RunConfig.load(args.config) if args.config else RunConfig()
        given = {o.partition("=")[0].strip(): o.partition("=")[2] for o in overrides}
        if cfg.trainer.checkpoint_dir is None and "trainer.checkpoint_dir" not in given:
            # The run folder's checkpoints/, made explicit here so that trainer.checkpoint_every_steps=N
            # passes validation (it needs a checkpoint_dir) and run_config.json says where they are.
            out_dir = args.out or Path(given.get("out_dir") or cfg.out_dir)
            overrides.append(f"trainer.checkpoint_dir={Path(out_dir) / 'checkpoints'}")
        cfg = cfg.with_overrides(overrides)
    if args.out is not None:
        cfg = cfg.with_overrides({"out_dir": str(args.out)})
    if args.no_progress:
        cfg = cfg.with_overrides({"trainer.progress": False})
    if args.print_config:
        print(cfg.to_json())
        return 0
    out = Path(cfg.out_dir)
    if args.resume:
        ignore = {"progress", "threads", "device"}  # how to run, not what to compute
        saved = _saved_config(out).to_dict()
        now = cfg.to_dict()
        for d in (saved, now):
            d["trainer"] = {k: v for k, v in d["trainer"].items() if k not in ignore}
        diffs = _config_differences(saved, now)
        if diffs:
            raise ValueError(
                f"--resume: the config differs from the one {out} was started with: "
                + "; ".join(diffs[:6])
                + "; resume with the same config (or omit it: "
                f"`isthmus train --out {out} --resume`), or start a new run"
            )
    from contextlib import nullcontext

    from isthmus.tasks.autoencoding import train_autoencoder
    from isthmus.train.callbacks import make_tracker
    from isthmus.train.distributed import is_main_process

    # under torchrun only rank 0 owns (locks, clears, writes) the run folder
    owner = claim_run_folder(out, overwrite=args.overwrite, resume=args.resume) if is_main_process() else nullcontext()
    with owner:
        run = train_autoencoder(
            cfg, resume=args.resume, callbacks=[make_tracker(name, cfg.out_dir) for name in args.log_to]
        )
    if run.out_dir is None:  # a torchrun rank > 0: rank 0 reports and saves
        return 0
    print(json.dumps(run.metrics, indent=2))
    print(f"saved run to {run.out_dir}", file=sys.stderr)  # stdout stays pure JSON
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from isthmus.tasks.autoencoding import reconstruction_metrics
    from isthmus.train import Trainer, TrainerConfig

    model, _, table, X = _load(args)
    metrics = reconstruction_metrics(model, X)
    terms = Trainer(model, TrainerConfig(progress=False)).evaluate(torch.as_tensor(X))
    metrics.update({f"loss_{k}" if k != "loss" else "loss": v for k, v in terms.items()})
    metrics["n"] = len(table)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for k, v in metrics.items():
            print(f"{k:>16}  {v:.6g}" if isinstance(v, float) else f"{k:>16}  {v}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    out = Path(args.output)
    if out.suffix not in (".npy", ".parquet", ".pq", ".csv"):
        raise ValueError(f"--output must end in .npy, .parquet or .csv, got {out.name}")
    model, _, table, X = _load(args)
    with torch.no_grad():
        xt = torch.as_tensor(X)
        z = torch.cat([model.encode(xt[i : i + 4096]) for i in range(0, len(xt), 4096)]).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, z)
    else:
        import pandas as pd

        df = pd.DataFrame(z, columns=[f"z{i}" for i in range(z.shape[1])])
        if table.y is not None:
            df["label"] = table.y
        df.to_csv(out, index=False) if out.suffix == ".csv" else df.to_parquet(out, index=False)
    print(f"wrote latents {z.shape} to {out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from isthmus.viz import save_image_grid

    model, scaler, table, X = _load(args)
    n = min(args.n, len(X))
    with torch.no_grad():
        recon = model.reconstruct(torch.as_tensor(X[:n])).numpy()
    orig, rec = table.X[:n], scaler.inverse_transform(recon)
    if orig.ndim == 2:
        d = orig.shape[1]
        if args.image_shape:
            h, w = (int(v) for v in args.image_shape.split(","))
        else:
            h = w = int(round(d**0.5))
        if h * w != d:
            raise ValueError(f"samples have {d} features, not an image; pass --image-shape H,W")
        orig, rec = orig.reshape(n, h, w), rec.reshape(n, h, w)
    lo, hi = float(np.min(orig)), float(np.max(orig))
    scale = (lambda a: (a - lo) / (hi - lo)) if hi > lo else (lambda a: a)
    path = save_image_grid([scale(orig), scale(rec)], args.output, row_labels=["input", "recon"])
    print(f"wrote {path}")
    return 0
