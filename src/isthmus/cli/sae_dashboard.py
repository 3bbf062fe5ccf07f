"""``isthmus sae dashboard SAE_DIR --store DIR --out DIR``: a static HTML feature dashboard.

See :mod:`isthmus.interp.dashboard`. Registered in :data:`isthmus.cli.sae.SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from isthmus.cli._args import positive_int

__all__ = ["add_dashboard", "cmd_dashboard"]


def add_dashboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="write a static HTML feature dashboard for a trained SAE",
        description="Write a static HTML site (index with search and sorting, one page per feature with "
        "top-activating contexts, activation histogram and decoder-direction statistics) for an SAE "
        "on an activation store. Open OUT/index.html, or serve it: python -m http.server -d OUT.",
    )
    p.add_argument("sae", type=Path, metavar="SAE_DIR", help="folder written by `isthmus sae train`")
    p.add_argument("--store", type=Path, required=True, metavar="DIR", help="activation store (with token ids)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder for the site")
    p.add_argument(
        "--explanations",
        type=Path,
        metavar="FILE",
        help="JSON {feature: {explanation, score, scores}} (default: SAE_DIR/explanations.json if any)",
    )
    p.add_argument(
        "--vocab",
        type=Path,
        metavar="FILE",
        help="token texts: a JSON list or one token a line (default: from the store's host model)",
    )
    p.add_argument("--max-tokens", type=positive_int, default=65_536, metavar="N", help="store rows scanned")
    p.add_argument("--top", type=positive_int, default=16, metavar="N", help="top contexts per feature")
    p.add_argument("--max-features", type=positive_int, metavar="N", help="pages for at most N features")
    from isthmus.cli.sae import add_device_args

    add_device_args(p, "autocast precision of the SAE forward (default float32)")
    p.set_defaults(func=cmd_dashboard)


def _read_vocab(path: Path):
    text = path.read_text(encoding="utf-8")
    vocab = json.loads(text) if path.suffix == ".json" else text.split("\n")
    return lambda i: vocab[i] if 0 <= i < len(vocab) else f"#{i}"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from isthmus.interp.dashboard import build_dashboard, load_explanations, store_vocab
    from isthmus.interp.transcoder import load_dictionary
    from isthmus.interp.store import ActivationStore

    from isthmus.interp.precision import autocast, resolve_device

    device = resolve_device(args.device)
    sae = load_dictionary(args.sae).to(device).eval()  # an SAE or a transcoder (features read its input store)
    store = ActivationStore(args.store)
    if sae.config.d_in != store.d:
        raise ValueError(f"SAE {args.sae} takes d_in={sae.config.d_in}, the store holds d={store.d}")
    token_text = _read_vocab(args.vocab) if args.vocab else store_vocab(store)
    if token_text is None:
        print("note: no vocabulary found for the store's model; tokens are shown as ids (give --vocab FILE)")
    expl = load_explanations(args.explanations or args.sae / "explanations.json")
    with autocast(device, args.dtype):
        index = build_dashboard(
            sae,
            store,
            args.out,
            token_text=token_text,
            explanations=expl,
            max_rows=args.max_tokens,
            n_top=args.top,
            max_features=args.max_features,
            title=f"SAE {args.sae.name} on {args.store.name}",
        )
    n_pages = len(list((args.out / "features").glob("f*.html")))
    print(f"wrote {index} ({n_pages} feature pages); serve with: python -m http.server -d {args.out}")
    return 0
