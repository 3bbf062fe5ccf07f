"""``isthmus sae synth``: an activation store drawn from the planted superposition benchmark.

The manifest records the generator's config, so ``isthmus sae evaluate`` can regenerate the ground truth
(true features, the parent/child hierarchy, which feature fired) and add feature recovery, absorption and
planted-feature probing to its report. Registered in :data:`isthmus.cli.sae.SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from isthmus.cli._args import positive_int

__all__ = ["add_synth", "cmd_synth"]


def add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a store of synthetic activations with planted features and a hierarchy",
        description="Sample activations x = Σ a_i f_i from isthmus.interp.superposition (Zipf firing, correlated "
        "groups, parent/child hierarchy) into an activation store. KEY=VALUE overrides go to "
        "SuperpositionConfig (d, n_features, n_parents, children_per_parent, p_max, noise, seed, ...).",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. d=64 n_features=512 n_parents=16")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="store folder")
    p.add_argument("--tokens", type=positive_int, default=65_536, metavar="N", help="rows to sample (default 65536)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    import torch

    from isthmus.interp.store import StoreWriter
    from isthmus.interp.superposition import SuperpositionConfig, SuperpositionData

    cfg = SuperpositionConfig().with_overrides(args.overrides)
    data = SuperpositionData(cfg)
    meta = {
        "source": "superposition",
        "superposition": cfg.to_dict(),
        "model": "superposition",
        "point": "x",
        "dataset": "superposition",
    }
    with StoreWriter(args.out, meta=meta, overwrite=args.overwrite) as w:
        for start in range(0, args.tokens, 8192):
            x, _ = data.sample(min(8192, args.tokens - start))
            w.add(x, positions=torch.zeros(len(x), dtype=torch.int32), sequence=torch.arange(start, start + len(x)))
    print(
        f"wrote {args.tokens} x {cfg.d} synthetic activations ({cfg.n_features} features, mean L0 "
        f"{data.mean_l0():.2f}, {cfg.n_parents} parents) -> {args.out}"
    )
    return 0
