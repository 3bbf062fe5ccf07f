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
    from isthmus.cli.sae import add_device_args

    p = sub.add_parser(
        "evaluate",
        help="score SAEs on a store (and by splicing into their host model)",
        description="Metrics JSON: L0, MSE, FVU, cosine, shrinkage (l2 ratio, relative reconstruction bias), "
        "dead/dense fractions, density histogram, k-sparse probing; with --host, loss recovered and KL "
        "score when spliced (a transcoder replaces the target module); on a `sae synth` store, feature "
        "recovery and absorption on the planted hierarchy. Plots: feature density, L0 vs FVU.",
    )
    p.add_argument("saes", nargs="+", type=Path, metavar="SAE_DIR", help="folder(s) written by `isthmus sae train`")
    p.add_argument("--store", type=Path, required=True, metavar="DIR", help="activation store to score on")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for metrics.json and PNGs")
    p.add_argument("--max-tokens", type=positive_int, default=65_536, metavar="N", help="store rows scored")
    p.add_argument("--host", metavar="MODEL", help="minilm, hf:PATH, toy:TASK or toy:PATH: splice the SAE into it")
    p.add_argument("--point", metavar="NAME", help="hook point to splice at (default: the store's point)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", type=Path, metavar="FILE", help="host text (default: the store's text file)")
    src.add_argument("--dataset", metavar="NAME", help="host text from a local data set: tinyshakespeare or wikitext-2")
    src.add_argument("--corpus", metavar="PATH", help="host text streamed from a local corpus (see sae harvest)")
    p.add_argument("--text-field", default="text", metavar="NAME", help="the corpus column holding text")
    p.add_argument(
        "--host-tokens",
        type=positive_int,
        default=4096,
        metavar="N",
        help="about N host tokens for loss recovered (default 4096)",
    )
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="B", help="host sequences per pass")
    p.add_argument("--max-length", type=positive_int, default=128, metavar="T", help="host tokens per sequence")
    p.add_argument("--seed", type=int, default=1, help="seed of toy-task sequences (default 1: not the harvest's 0)")
    p.add_argument("--toy-train", nargs="*", default=[], metavar="KEY=VALUE", help="as for harvest (same cache)")
    p.add_argument("--target-store", type=Path, metavar="DIR", help="a transcoder's target store (see sae train)")
    p.add_argument(
        "--probe-tasks",
        type=int,
        default=4,
        metavar="N",
        help="k-sparse probing on N labelled tasks (token identity, or planted features for a "
        "`sae synth` store; 0 = off)",
    )
    p.add_argument("--probe-tokens", type=positive_int, default=8192, metavar="N", help="rows used for probing")
    add_device_args(p, "autocast precision of the SAE and host forwards (default float32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def _host_batches(args: argparse.Namespace, store: Any) -> tuple[Any, list]:
    """(host model on --device, about --host-tokens tokens of batches) for splicing."""
    from isthmus.cli.sae import _load, _read_text

    text = _read_text(args)
    dataset = store.manifest.get("dataset")
    if text is None and isinstance(dataset, str) and "text_field" in store.manifest:  # harvested from --corpus
        from isthmus.interp.corpus import Corpus

        text = Corpus(dataset, text_field=store.manifest["text_field"])
    elif text is None and isinstance(dataset, str) and Path(dataset).is_file():
        text = (Path(dataset).read_text(encoding="utf-8", errors="replace"), dataset)
    ns = argparse.Namespace(
        model=args.host,
        max_length=args.max_length,
        keep_special=False,
        toy_train=args.toy_train,
        no_progress=args.no_progress,
        seed=args.seed,
        max_tokens=args.host_tokens,
        batch_size=args.batch_size,
        device=args.device,
    )
    model, make_batches, _ = _load(ns)
    if text is None and not args.host.startswith("toy:"):
        raise ValueError("loss recovered on this host needs text: --text FILE or --dataset NAME")
    batches, tokens = [], 0
    for b in make_batches(text):
        batches.append(b)
        tokens += int(b["attention_mask"].sum()) if isinstance(b, dict) else b.numel()
        if tokens >= args.host_tokens:
            break
    return model, batches


def _host_splice(args: argparse.Namespace, store: Any, saes: dict[str, Any]) -> dict[str, dict]:
    """Loss recovered and KL of each SAE spliced into ``--host`` at ``--point`` (default: the store's point);
    a transcoder replaces the target store's point, predicted from the store's point."""
    from isthmus.interp.precision import autocast, resolve_device
    from isthmus.interp.splice import splice_loss_recovered
    from isthmus.interp.store import ActivationStore
    from isthmus.interp.transcoder import transcoder_loss_recovered

    point = args.point or store.manifest.get("point")
    if not point:
        raise ValueError("--point is needed: the store's manifest names no hook point")
    model, batches = _host_batches(args, store)
    out = {}
    with autocast(resolve_device(args.device), args.dtype):
        for name, sae in saes.items():
            if getattr(sae, "is_transcoder", False):
                target = ActivationStore(args.target_store).manifest.get("point")
                if not target:
                    raise ValueError(
                        f"{args.target_store}: the target store's manifest names no hook point, so "
                        "the transcoder's output cannot be spliced into --host"
                    )
                r = transcoder_loss_recovered(model, batches, point, target, sae)
            else:
                r = splice_loss_recovered(model, batches, point, sae).to_dict()
            out[name] = {**r, "host": args.host}
    return out


def _probing_and_ground_truth(args: argparse.Namespace, store: Any, sae: Any) -> dict[str, Any]:
    """k-sparse probing (and, for a synthetic store, feature recovery and absorption) of one SAE."""
    from isthmus.interp.sae_evals import (
        planted_absorption,
        planted_probe_tasks,
        probe_tasks_from_tokens,
        sparse_probing,
    )

    out: dict[str, Any] = {}
    n = min(len(store), args.probe_tokens)
    if store.manifest.get("source") == "superposition":
        import torch

        from isthmus.interp.superposition import SuperpositionConfig, SuperpositionData, feature_recovery

        data = SuperpositionData(SuperpositionConfig.from_dict(store.manifest["superposition"]))
        x, coef = data.sample(n, torch.Generator().manual_seed(args.seed + 7))  # fresh, held-out draws
        out["feature_recovery"] = feature_recovery(data.features, sae.W_dec.detach().float().cpu())
        if data.config.n_parents:
            out["absorption"] = planted_absorption(sae, data, n=n, seed=args.seed + 8)
        tasks = planted_probe_tasks(coef, args.probe_tasks)
    else:
        x = store.read(0, n).float()
        tasks = probe_tasks_from_tokens(store.read(0, n, field="token_ids"), args.probe_tasks)
        out["absorption"] = {"note": "needs a planted hierarchy: evaluate on a store from `isthmus sae synth`"}
    if tasks:
        try:
            out["sparse_probing"] = sparse_probing(sae, x, tasks, seed=args.seed)
        except ValueError as exc:
            out["sparse_probing"] = {"note": str(exc)}
    else:
        out["sparse_probing"] = {"note": "no labelled task: the store has no token ids frequent enough"}
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from isthmus.cli.sae import _take
    from isthmus.interp.precision import autocast, resolve_device
    from isthmus.interp.store import ActivationStore
    from isthmus.interp.transcoder import load_dictionary
    from isthmus.io import atomic_write_json
    from isthmus.metrics.sae import evaluate_sae

    device = resolve_device(args.device)
    store = ActivationStore(args.store)
    targets = ActivationStore(args.target_store) if args.target_store else None
    saes: dict[str, Any] = {}
    for path in args.saes:
        name = path.name if path.name not in saes else str(path)
        saes[name] = load_dictionary(path).to(device)
        if saes[name].config.d_in != store.d:
            raise ValueError(f"SAE {path} takes d_in={saes[name].config.d_in}, the store holds d={store.d}")
        if getattr(saes[name], "is_transcoder", False) and targets is None:
            raise ValueError(f"{path} is a transcoder: give its target store with --target-store DIR")
    results: dict[str, dict] = {}
    for name, sae in saes.items():
        if getattr(sae, "is_transcoder", False):
            from isthmus.interp.paired import PairedStores

            assert targets is not None  # checked above for every transcoder
            pairs = PairedStores(store, targets).iter_batches(4096, shuffle=False)
            batches: Any = (tuple(t.to(device=device, dtype=torch.float32) for t in b) for b in pairs)
        else:
            batches = (b.to(device=device, dtype=torch.float32) for b in store.iter_batches(4096, shuffle=False))
        with autocast(device, args.dtype):
            results[name] = evaluate_sae(sae, _take(batches, args.max_tokens))
        results[name]["bottleneck"] = sae.config.bottleneck
        if args.probe_tasks and not getattr(sae, "is_transcoder", False):
            results[name].update(_probing_and_ground_truth(args, store, sae))
    if args.host:
        for name, splice in _host_splice(args, store, saes).items():
            results[name]["splice"] = splice
            results[name]["loss_recovered"] = splice["loss_recovered"]
            results[name]["kl_score"] = splice.get("kl_score", float("nan"))
    args.out.mkdir(parents=True, exist_ok=True)
    figures = [_plot_density(results, args.out)]
    if len(results) > 1:
        figures.append(_plot_l0_fvu(results, args.out))
    atomic_write_json(args.out / "metrics.json", {"store": str(args.store), "saes": results, "figures": figures})
    for name, r in results.items():
        print(_summary_line(name, r))
    print(f"wrote {args.out / 'metrics.json'} and {', '.join(figures)}")
    return 0


def _summary_line(name: str, r: dict[str, Any]) -> str:
    parts = [
        f"{name}: L0 {r['l0']:.2f}  MSE {r['mse']:.4g}  FVU {r['fvu']:.4f}  cos {r['cosine']:.3f}  "
        f"dead {r['dead_fraction']:.3f}  dense {r['dense_fraction']:.3f}  l2 ratio {r['l2_ratio']:.3f}  "
        f"rel. bias {r['relative_reconstruction_bias']:.3f}"
    ]
    if "loss_recovered" in r:
        kl = r["splice"].get("kl_spliced", float("nan"))
        kl_text = (
            "" if kl != kl else f"  KL {kl:.4f}  KL score {r.get('kl_score', float('nan')):.3f}"
        )  # NaN: encoder host
        parts.append(f"loss recovered {r['loss_recovered']:.3f}{kl_text}")
    probe = r.get("sparse_probing", {})
    if "mean" in probe:
        m = probe["mean"]
        parts.append(
            f"k-sparse probe acc k=1 {m['sae_k1']:.3f} (inputs {m['inputs_k1']:.3f}), "
            f"k=5 {m['sae_k5']:.3f} (inputs {m['inputs_k5']:.3f}), dense inputs {m['dense_inputs']:.3f}"
        )
    ab = r.get("absorption", {})
    if "absorption_rate" in ab:
        parts.append(f"absorption {ab['absorption_rate']:.3f} (false negatives {ab['false_negative_rate']:.3f})")
    if "feature_recovery" in r:
        parts.append(f"feature recovery mean max cos {r['feature_recovery']['mean_max_cos']:.3f}")
    return "\n    ".join(parts)


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
