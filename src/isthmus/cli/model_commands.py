"""``isthmus train | evaluate | encode | reconstruct``: the model lifecycle from the shell.

``train`` takes a YAML/JSON run config (see ``examples/configs/``) plus ``key=value`` overrides
with dotted keys (``trainer.epochs=5 model.bottleneck=gaussian``); the config dataclass *is*
the CLI, so every field is reachable. The other commands read a run folder written by ``train``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train an autoencoder from a config file and key=value overrides",
        description="Train an autoencoder. CONFIG is a YAML/JSON run config (optional: defaults train the "
                    "default MLP autoencoder on scikit-learn digits). Overrides use dotted keys, e.g. "
                    "trainer.epochs=5 model.latent_dim=4 model.bottleneck=gaussian data.source=my.csv.",
    )
    p.add_argument("config", nargs="?", type=Path, help="run config (.yaml/.yml/.json)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides with dotted keys")
    p.add_argument("--out", type=Path, default=None, help="run folder (overrides out_dir)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--log-to", action="append", default=[], choices=("tensorboard", "mlflow"),
                   help="also send the JSONL log to TensorBoard (<out>/tensorboard) or MLflow (<out>/mlruns); "
                        "repeatable; needs pip install 'isthmus[tracking]'")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("evaluate", help="reconstruction metrics of a trained run on data",
                              description="Print reconstruction MSE/PSNR and every loss term on DATA.")
    _run_and_data(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("encode", help="write latent codes of data to .npy or .parquet",
                              description="Encode DATA with a trained run; write latents (N, latent_dim).")
    _run_and_data(p)
    p.add_argument("--output", "-o", type=Path, required=True, help="output file: .npy or .parquet")
    p.set_defaults(func=cmd_encode)

    p = subparsers.add_parser("reconstruct", help="save a PNG grid of inputs and reconstructions",
                              description="Reconstruct the first N samples of DATA and save a PNG grid.")
    _run_and_data(p)
    p.add_argument("--output", "-o", type=Path, required=True, help="output PNG")
    p.add_argument("-n", type=int, default=10, help="number of samples (default 10)")
    p.add_argument("--image-shape", default=None, help="H,W for flat tabular samples (default: square)")
    p.set_defaults(func=cmd_reconstruct)


def _run_and_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="run folder written by `isthmus train` (or a model folder)")
    p.add_argument("--data", default=None,
                   help="data: digits | shapes | mnist | a path (default: the run's own validation split)")


def _load(args: argparse.Namespace):
    """Model, scaler and the (scaled) data an evaluate/encode/reconstruct command works on."""
    from isthmus.data import train_val_split
    from isthmus.tasks.autoencoding import DataSection, load_run, load_source

    model, scaler, cfg = load_run(args.run)
    if args.data is None:
        if cfg is None:
            raise ValueError(f"{args.run} has no run_config.json; pass --data")
        _, table = train_val_split(load_source(cfg.data), val_fraction=cfg.data.val_fraction, seed=cfg.data.seed)
    else:
        section = cfg.data.with_overrides({"source": args.data}) if cfg else DataSection(source=args.data)
        table = load_source(section)
    return model, scaler, table, scaler.transform(table.X)


def cmd_train(args: argparse.Namespace) -> int:
    from isthmus.tasks.autoencoding import RunConfig, train_autoencoder

    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config.name and not args.config.exists():
        overrides.insert(0, str(args.config))  # no config file given: the first word is an override
        args.config = None
    cfg = RunConfig.load(args.config) if args.config else RunConfig()
    cfg = cfg.with_overrides(overrides)
    if args.out is not None:
        cfg = cfg.with_overrides({"out_dir": str(args.out)})
    if args.print_config:
        print(cfg.to_json())
        return 0
    from isthmus.train.callbacks import make_tracker

    run = train_autoencoder(cfg, callbacks=[make_tracker(name, cfg.out_dir) for name in args.log_to])
    if run.out_dir is None:  # a torchrun rank > 0: rank 0 reports and saves
        return 0
    print(json.dumps(run.metrics, indent=2))
    print(f"saved run to {run.out_dir}")
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

    model, _, table, X = _load(args)
    with torch.no_grad():
        xt = torch.as_tensor(X)
        z = torch.cat([model.encode(xt[i:i + 4096]) for i in range(0, len(xt), 4096)]).numpy()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, z)
    elif out.suffix in (".parquet", ".pq"):
        import pandas as pd

        df = pd.DataFrame(z, columns=[f"z{i}" for i in range(z.shape[1])])
        if table.y is not None:
            df["label"] = table.y
        df.to_parquet(out, index=False)
    else:
        raise ValueError(f"--output must end in .npy or .parquet, got {out.name}")
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
            h = w = int(round(d ** 0.5))
        if h * w != d:
            raise ValueError(f"samples have {d} features, not an image; pass --image-shape H,W")
        orig, rec = orig.reshape(n, h, w), rec.reshape(n, h, w)
    lo, hi = float(np.min(orig)), float(np.max(orig))
    scale = (lambda a: (a - lo) / (hi - lo)) if hi > lo else (lambda a: a)
    path = save_image_grid([scale(orig), scale(rec)], args.output, row_labels=["input", "recon"])
    print(f"wrote {path}")
    return 0
