"""``isthmus sae evaluate``: score SAEs on a store and, with ``--host``, by splicing them into the host.

Registered in :data:`isthmus.cli.sae.SUBCOMMANDS`. Prints one line per SAE and writes OUT/metrics.json
and plots (feature density per SAE; L0 vs FVU for several SAEs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from isthmus.cli._args import positive_int
from isthmus.viz import pyplot, save_figure

__all__ = ["add_evaluate", "cmd_evaluate"]


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    from isthmus.cli.sae import DATASETS, add_device_args

    p = sub.add_parser(
        "evaluate", help="score SAEs on a store (and by splicing into their host model)",
        description="Metrics JSON (L0, MSE, FVU, cosine, dead/dense fractions, density histogram; loss recovered "
                    "when --host is given) and plots: a feature-density histogram per SAE, L0 vs FVU for several.")
    p.add_argument("saes", nargs="+", type=Path, metavar="SAE_DIR", help="folder(s) written by `isthmus sae train`")
    p.add_argument("--store", type=Path, required=True, metavar="DIR", help="activation store to score on")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for metrics.json and PNGs")
    p.add_argument("--max-tokens", type=positive_int, default=65_536, metavar="N", help="store rows scored")
    p.add_argument("--host", metavar="MODEL", help="minilm, hf:PATH, toy:TASK or toy:PATH: splice the SAE into it")
    p.add_argument("--point", metavar="NAME", help="hook point to splice at (default: the store's point)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", type=Path, metavar="FILE", help="host text (default: the store's text file)")
    src.add_argument("--dataset", choices=sorted(DATASETS), help="host text from a local data set")
    p.add_argument("--host-tokens", type=positive_int, default=4096, metavar="N",
                   help="about N host tokens for loss recovered (default 4096)")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="B", help="host sequences per pass")
    p.add_argument("--max-length", type=positive_int, default=128, metavar="T", help="host tokens per sequence")
    p.add_argument("--seed", type=int, default=1, help="seed of toy-task sequences (default 1: not the harvest's 0)")
    p.add_argument("--toy-train", nargs="*", default=[], metavar="KEY=VALUE", help="as for harvest (same cache)")
    add_device_args(p, "autocast precision of the SAE and host forwards (default float32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def _host_splice(args: argparse.Namespace, store: Any, saes: dict[str, Any]) -> dict[str, dict]:
    """Loss recovered of each SAE spliced into ``--host`` at ``--point`` (default: the store's point)."""
    from isthmus.cli.sae import _load, _read_text
    from isthmus.interp.precision import autocast, resolve_device
    from isthmus.interp.splice import splice_loss_recovered

    point = args.point or store.manifest.get("point")
    if not point:
        raise ValueError("--point is needed: the store's manifest names no hook point")
    text = _read_text(args)
    dataset = store.manifest.get("dataset")
    if text is None and isinstance(dataset, str) and Path(dataset).is_file():
        text = (Path(dataset).read_text(encoding="utf-8", errors="replace"), dataset)
    ns = argparse.Namespace(model=args.host, max_length=args.max_length, keep_special=False,
                            toy_train=args.toy_train, no_progress=args.no_progress, seed=args.seed,
                            max_tokens=args.host_tokens, batch_size=args.batch_size, device=args.device)
    model, make_batches, _ = _load(ns)
    if text is None and not args.host.startswith("toy:"):
        raise ValueError("loss recovered on this host needs text: --text FILE or --dataset NAME")
    batches, tokens = [], 0
    for b in make_batches(text):
        batches.append(b)
        tokens += int(b["attention_mask"].sum()) if isinstance(b, dict) else b.numel()
        if tokens >= args.host_tokens:
            break
    with autocast(resolve_device(args.device), args.dtype):
        return {name: {**splice_loss_recovered(model, batches, point, sae).to_dict(), "host": args.host}
                for name, sae in saes.items()}


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from isthmus.cli.sae import _take
    from isthmus.interp.precision import autocast, resolve_device
    from isthmus.interp.sae import SparseAutoEncoder
    from isthmus.interp.store import ActivationStore
    from isthmus.io import atomic_write_json
    from isthmus.metrics.sae import evaluate_sae

    store = ActivationStore(args.store)
    device = resolve_device(args.device)
    saes: dict[str, Any] = {}
    for path in args.saes:
        name = path.name if path.name not in saes else str(path)
        saes[name] = SparseAutoEncoder.from_pretrained(path).to(device)
        if saes[name].config.d_in != store.d:
            raise ValueError(f"SAE {path} takes d_in={saes[name].config.d_in}, the store holds d={store.d}")
    results: dict[str, dict] = {}
    for name, sae in saes.items():
        batches = (b.to(device=device, dtype=torch.float32) for b in store.iter_batches(4096, shuffle=False))
        with autocast(device, args.dtype):
            results[name] = evaluate_sae(sae, _take(batches, args.max_tokens))
        results[name]["bottleneck"] = sae.config.bottleneck
    if args.host:
        for name, splice in _host_splice(args, store, saes).items():
            results[name]["splice"] = splice
            results[name]["loss_recovered"] = splice["loss_recovered"]
    args.out.mkdir(parents=True, exist_ok=True)
    figures = [_plot_density(results, args.out)]
    if len(results) > 1:
        figures.append(_plot_l0_fvu(results, args.out))
    atomic_write_json(args.out / "metrics.json", {"store": str(args.store), "saes": results, "figures": figures})
    for name, r in results.items():
        lr = f"  loss recovered {r['loss_recovered']:.3f}" if "loss_recovered" in r else ""
        print(f"{name}: L0 {r['l0']:.2f}  MSE {r['mse']:.4g}  FVU {r['fvu']:.4f}  cos {r['cosine']:.3f}  "
              f"dead {r['dead_fraction']:.3f}  dense {r['dense_fraction']:.3f}{lr}")
    print(f"wrote {args.out / 'metrics.json'} and {', '.join(figures)}")
    return 0


def _plot_density(results: dict[str, dict], out: Path) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, r in results.items():
        h = r["density_histogram"]
        edges = h["log10_edges"]
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        ax.step(centers, h["counts"], where="mid", label=f"{name} (dead {h['dead']})")
    ax.set_xlabel("log10 firing density")
    ax.set_ylabel("latents")
    ax.set_title("feature density")
    ax.legend(fontsize=7)
    save_figure(fig, out / "feature_density.png", dpi=90)
    return "feature_density.png"


def _plot_l0_fvu(results: dict[str, dict], out: Path) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for name, r in results.items():
        ax.scatter(r["l0"], r["fvu"])
        ax.annotate(name, (r["l0"], r["fvu"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("L0")
    ax.set_ylabel("FVU")
    ax.set_title("sparsity vs reconstruction")
    save_figure(fig, out / "l0_vs_fvu.png", dpi=90)
    return "l0_vs_fvu.png"
