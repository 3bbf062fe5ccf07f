"""``isthmus generate``: two-stage generation from the shell.

``generate fit CONFIG [KEY=VALUE ...] --out DIR`` trains the autoencoder of a run config (exactly as
``isthmus train`` does, same run folder), then a prior over its latents (``--prior``), and writes
``DIR/generator/`` and ``DIR/generate_report.json`` with the sample-quality numbers: the Fréchet distance
between prior samples and held-out latents, beside the same number for a Gaussian fitted to the
latents (the baseline a learned prior must beat). ``generate sample DIR -n 64 -o grid.png`` draws
seeded samples and writes an image grid (image data) and/or ``--npy``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isthmus.cli._args import positive_int
from isthmus.cli.run_folder import add_run_folder_flags

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "generate",
        help="two-stage generation: autoencoder + latent prior",
        description="Fit an autoencoder and a prior over its latents; sample from them.",
    )
    group.set_defaults(help_parser=group)
    sub = group.add_subparsers(dest="generate_command", metavar="SUBCOMMAND")
    p = sub.add_parser("fit", help="train the autoencoder of a run config, then a latent prior")
    p.add_argument("config", type=Path, help="run config (.yaml/.json), as for `isthmus train`")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides with dotted keys")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder (refused if not empty)")
    p.add_argument("--prior", choices=("flow_matching", "flow", "gaussian"), default="flow_matching")
    p.add_argument("--prior-epochs", type=positive_int, default=100, metavar="N")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_run_folder_flags(p, resume=False)
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("sample", help="draw seeded samples from a fitted generator")
    p.add_argument("run", type=Path, metavar="DIR", help="folder written by `isthmus generate fit`")
    p.add_argument("-n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", "-o", type=Path, default=None, metavar="FILE", help="PNG grid (image data only)")
    p.add_argument("--npy", type=Path, default=None, metavar="FILE", help="samples in data units as .npy")
    p.set_defaults(func=cmd_sample)


def cmd_fit(args: argparse.Namespace) -> int:
    import torch

    from isthmus.cli.run_folder import claim_run_folder
    from isthmus.io import atomic_write_json
    from isthmus.metrics.generative import frechet_distance
    from isthmus.tasks.autoencoding import RunConfig, train_autoencoder
    from isthmus.tasks.generate import TwoStageGenerator
    from isthmus.train import TrainerConfig

    cfg = RunConfig.load(args.config).with_overrides(list(args.overrides) + [f"out_dir={args.out}"])
    if args.no_progress:
        cfg = cfg.with_overrides({"trainer.progress": False})
    with claim_run_folder(args.out, overwrite=args.overwrite):
        run = train_autoencoder(cfg)
        xtr = torch.as_tensor(run.scaler.transform(run.train.X), dtype=torch.float32)
        xva = torch.as_tensor(run.scaler.transform(run.val.X), dtype=torch.float32)
        ptc = TrainerConfig(
            epochs=args.prior_epochs, batch_size=256, lr=1e-3, seed=cfg.trainer.seed, progress=not args.no_progress
        )
        gen = TwoStageGenerator(run.model, args.prior).fit(xtr, None, ptc)
        gen.save(args.out / "generator")
        held = gen.encode(xva).numpy()
        n = max(len(held), 256)
        report = {
            "prior": args.prior,
            "autoencoder": run.metrics,
            "latent_frechet_prior_vs_heldout": frechet_distance(gen.sample_latents(n, 0).numpy(), held),
        }
        if args.prior != "gaussian":
            base = TwoStageGenerator(run.model, "gaussian").fit(xtr)
            report["latent_frechet_gaussian_vs_heldout"] = frechet_distance(base.sample_latents(n, 0).numpy(), held)
        report["latent_frechet_train_vs_heldout"] = frechet_distance(gen.encode(xtr).numpy(), held)
        atomic_write_json(args.out / "generate_report.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "autoencoder"}, indent=2))
    print(f"saved generator to {args.out / 'generator'}", file=sys.stderr)

    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from isthmus.tasks.autoencoding import load_run
    from isthmus.tasks.generate import TwoStageGenerator

    if not (args.run / "generator" / "generator.json").is_file():
        raise FileNotFoundError(
            f"{args.run} has no generator/; fit one with `isthmus generate fit ... --out {args.run}`"
        )
    if args.output is None and args.npy is None:
        raise ValueError("say where to write the samples: -o grid.png and/or --npy samples.npy")
    _, scaler, _ = load_run(args.run)
    gen = TwoStageGenerator.load(args.run / "generator")
    x = gen.sample(args.n, seed=args.seed).numpy()
    x = np.asarray(scaler.inverse_transform(x.reshape(len(x), -1))).reshape(x.shape)
    if args.npy is not None:
        np.save(args.npy, x)
        print(f"wrote {args.npy}")
    if args.output is not None:
        from isthmus.viz import image_grid, pyplot, save_figure

        imgs = x if x.ndim >= 3 else _square(x)
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(8, 8))
        ax.imshow(np.clip(image_grid(imgs, ncol=int(np.ceil(np.sqrt(len(imgs))))), 0, 1), cmap="gray")
        ax.axis("off")
        save_figure(fig, args.output)
        print(f"wrote {args.output}")
    return 0


def _square(x):
    import numpy as np

    side = int(round(np.sqrt(x.shape[1])))
    if side * side != x.shape[1]:
        raise ValueError(f"samples have {x.shape[1]} features, not an image; write them with --npy instead")
    return x.reshape(len(x), side, side)
