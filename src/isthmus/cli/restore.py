"""``isthmus restore``: train an image restorer and apply it to a folder of images.

``restore fit CONFIG [KEY=VALUE ...] --out DIR`` trains a U-Net restorer (a
:class:`~isthmus.tasks.restore.RestoreRunConfig`: degradations, patch count, U-Net widths, trainer) on
degraded patches of the photos bundled with scikit-image, and writes ``DIR/restorer/`` and
``DIR/restore_report.json`` (PSNR/SSIM of input and restored patches from held-out photos).
``restore apply DIR IMAGES --out OUT`` restores every PNG/JPEG/TIFF in IMAGES and writes
``OUT/<name>_before.png`` and ``OUT/<name>_after.png`` (``--degrade`` first applies the run's own
degradations, seeded, to show the restorer on clean photos).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isthmus.cli._args import positive_int
from isthmus.cli.run_folder import add_run_folder_flags

__all__ = ["add_parser"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "restore",
        help="image restoration: train a U-Net restorer, apply it to images",
        description="Train a U-Net restorer on degraded photo patches; restore images.",
    )
    group.set_defaults(help_parser=group)
    sub = group.add_subparsers(dest="restore_command", metavar="SUBCOMMAND")
    p = sub.add_parser("fit", help="train a restorer from a restore config (.yaml/.json)")
    p.add_argument("config", type=Path, help="restore config: restorer, degradations, n_train, patch, gray, trainer")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides with dotted keys")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder (refused if not empty)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_run_folder_flags(p, resume=False)
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("apply", help="restore every image of a folder; write before/after PNGs")
    p.add_argument("run", type=Path, metavar="DIR", help="folder written by `isthmus restore fit`")
    p.add_argument("images", type=Path, metavar="IMAGES_FOLDER", help="folder of .png/.jpg/.tif images")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="where the before/after PNGs go")
    p.add_argument(
        "--tile",
        type=positive_int,
        default=None,
        metavar="N",
        help="restore in N×N tiles to bound memory (same result as whole-image)",
    )
    p.add_argument(
        "--degrade",
        action="store_true",
        help="degrade each image with the run's degradations first (a demo on clean photos)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --degrade")
    p.set_defaults(func=cmd_apply)


def cmd_fit(args: argparse.Namespace) -> int:
    from isthmus.cli.run_folder import claim_run_folder
    from isthmus.io import atomic_write_json
    from isthmus.tasks.restore import RestoreRunConfig, train_restore_run

    cfg = RestoreRunConfig.load(args.config).with_overrides(list(args.overrides))
    with claim_run_folder(args.out, overwrite=args.overwrite):
        run = train_restore_run(cfg, progress=not args.no_progress)
        run.model.save_pretrained(args.out / "restorer")
        atomic_write_json(args.out / "config.json", cfg.to_dict())
        atomic_write_json(args.out / "restore_report.json", run.report)
    shown = {k: v for k, v in run.report.items() if k.startswith("test_")}
    print(json.dumps(shown, indent=2))
    print(f"saved restorer to {args.out / 'restorer'}", file=sys.stderr)
    return 0


def _read_image(path: Path, channels: int):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        img = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    return img


def _write_png(path: Path, img) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)


def cmd_apply(args: argparse.Namespace) -> int:
    from isthmus.tasks.restore import Restorer, RestoreRunConfig

    if not (args.run / "restorer").is_dir():
        raise FileNotFoundError(
            f"{args.run} has no restorer/; train one with `isthmus restore fit CONFIG --out {args.run}`"
        )
    if not args.images.is_dir():
        raise FileNotFoundError(f"{args.images} is not a folder of images")
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{args.images} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    model = Restorer.from_pretrained(args.run / "restorer")
    channels = model.config.unet.in_channels
    degradations = None
    if args.degrade:
        degradations = RestoreRunConfig.load(args.run / "config.json").degradations
    args.out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        img = _read_image(path, channels)
        if degradations is not None:
            from isthmus.data.degrade import degrade

            batch = img[None, None] if img.ndim == 2 else img.transpose(2, 0, 1)[None]
            d = degrade(batch, degradations, seed=args.seed + i)[0]
            img = d[0] if img.ndim == 2 else d.transpose(1, 2, 0)
        after = model.restore(img, tile=args.tile)
        _write_png(args.out / f"{path.stem}_before.png", img)
        _write_png(args.out / f"{path.stem}_after.png", after)
        print(f"{path.name}: wrote {path.stem}_before.png, {path.stem}_after.png")
    print(f"restored {len(files)} image(s) into {args.out}", file=sys.stderr)
    return 0
