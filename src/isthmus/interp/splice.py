"""Loss recovered by splicing an SAE reconstruction into its host model.

At one hook point the activation is replaced (with :func:`isthmus.interp.hooks.patch`) by

* ``spliced`` — the SAE reconstruction x̂ of every token's activation,
* ``zero``    — zeros (the usual zero-ablation baseline),
* ``mean``    — the mean activation over the evaluated tokens (mean ablation, a gentler baseline),

and the host's loss is compared with the clean run. The loss is

* ``next_token_ce`` for language models returning logits (the toy zoo, the Tiny Shakespeare char
  model): next-token cross-entropy, over ``mask`` positions when a batch is ``(tokens, mask)``;
* ``embedding_cosine_drop`` for encoders without an LM head (MiniLM): 1 − cos(clean, patched) of the
  mean-pooled sentence embedding, so the clean loss is 0 by construction.

``loss_recovered`` = (L_zero − L_spliced) / (L_zero − L_clean) (:func:`isthmus.metrics.sae.loss_recovered`);
``loss_recovered_mean`` uses the mean-ablated loss as the reference instead. For LMs the KL divergence
of the next-token distribution from the clean one is reported too (``kl_spliced``, ``kl_zero_ablated``,
``kl_score`` = (KL_zero − KL_spliced) / KL_zero, the SAELens / SAEBench "KL score").

For Hugging Face batches (tokenizer dicts) only real tokens are replaced: padding always stays
clean and, with ``splice_special=False`` (default, matching a store harvested with special tokens
dropped), so do [CLS]/[SEP]-like tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.interp.hooks import patch, resolve_point, run_with_cache
from isthmus.metrics.sae import loss_recovered

__all__ = ["SpliceResult", "splice_loss_recovered", "sae_reconstruct_fn"]

Reconstruct = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SpliceResult:
    metric: str  # "next_token_ce" or "embedding_cosine_drop"
    point: str
    clean_loss: float
    spliced_loss: float
    zero_ablated_loss: float
    mean_ablated_loss: float
    loss_recovered: float  # vs zero ablation
    loss_recovered_mean: float  # vs mean ablation
    n: int  # targets (tokens) or sentences averaged over
    kl_spliced: float = float("nan")  # mean KL(clean ‖ spliced) per target token (LMs only)
    kl_zero_ablated: float = float("nan")
    kl_mean_ablated: float = float("nan")
    kl_score: float = float("nan")  # (KL_zero − KL_spliced) / KL_zero, as SAELens/SAEBench

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sae_reconstruct_fn(sae: nn.Module) -> Reconstruct:
    """(N, d) → (N, d) reconstruction of a :class:`~isthmus.interp.sae.SparseAutoEncoder` (or any module
    whose output has ``recon``), in eval mode and the SAE's dtype."""
    sae.eval()
    dtype = next(sae.parameters()).dtype

    def fn(x: torch.Tensor) -> torch.Tensor:
        return sae(x.to(dtype)).recon.to(x.dtype)

    return fn


def _unpack(batch: Any) -> tuple[Any, torch.Tensor | None, torch.Tensor | None]:
    """(model inputs, target mask for CE or None, splice mask (B, T) or None)."""
    if isinstance(batch, dict):
        inputs = {k: v for k, v in batch.items() if k != "special_tokens_mask"}
        real = batch["attention_mask"].bool() if "attention_mask" in batch else None
        return inputs, None, real
    if isinstance(batch, (tuple, list)):
        return batch[0], batch[1].bool(), None
    return batch, None, None


def _to_device(item: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts/tuples) moved to the host model's device."""
    if isinstance(item, torch.Tensor):
        return item.to(device)
    if isinstance(item, dict):
        return {k: _to_device(v, device) for k, v in item.items()}
    if isinstance(item, tuple):
        return tuple(_to_device(v, device) for v in item)
    return item


def _forward(model: nn.Module, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def _loss(
    model: nn.Module, inputs: Any, target_mask: torch.Tensor | None, clean_emb: torch.Tensor | None
) -> tuple[float, int, torch.Tensor | None, float]:
    """(summed loss, count, reference, summed KL) of one forward pass.

    The reference of a clean pass (``clean_emb`` None) is the sentence embedding (encoders) or the
    next-token log-probabilities (LMs); patched passes get it back and add KL(clean ‖ patched),
    summed over target tokens (NaN for encoders)."""
    out = _forward(model, inputs)
    if isinstance(inputs, dict):  # encoder: mean-pooled sentence embedding
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (B, T, d)
        w = inputs["attention_mask"].unsqueeze(-1).to(h.dtype)
        emb = (h * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, d)
        if clean_emb is None:
            return 0.0, emb.shape[0], emb, float("nan")
        return float((1 - F.cosine_similarity(emb, clean_emb, dim=-1)).sum()), emb.shape[0], emb, float("nan")
    logits = (out.logits if hasattr(out, "logits") else out)[:, :-1]  # (B, T-1, V)
    target = inputs[:, 1:]
    m = torch.ones_like(target, dtype=torch.bool) if target_mask is None else target_mask[:, 1:]
    logp = F.log_softmax(logits[m].float(), dim=-1)  # (N, V)
    ce = float(F.nll_loss(logp, target[m], reduction="sum"))
    if clean_emb is None:
        return ce, int(m.sum()), logp, 0.0
    return ce, int(m.sum()), logp, float(F.kl_div(logp, clean_emb, log_target=True, reduction="sum"))


def _replacer(value_fn: Callable[[torch.Tensor], torch.Tensor], where: torch.Tensor | None):
    """A patch fn applying ``value_fn`` to the flattened (N, d) activation, only at ``where`` (B, T)."""

    def fn(v: torch.Tensor) -> torch.Tensor:
        b, t = v.shape[:2]
        flat = v.reshape(b * t, -1)  # (B·T, d) — per-head points are flattened to H·dh
        new = value_fn(flat).reshape(v.shape)
        if where is None:
            return new
        keep = where.reshape(b, t, *([1] * (v.dim() - 2)))
        return torch.where(keep, new, v)

    return fn


@torch.no_grad()
def splice_loss_recovered(
    model: nn.Module,
    batches: Iterable[Any],
    point: str,
    reconstruct: Reconstruct | nn.Module,
    *,
    splice_special: bool = False,
    max_batches: int | None = None,
    mean_activation: torch.Tensor | None = None,
) -> SpliceResult:
    """Host loss clean / with ``reconstruct`` spliced in at ``point`` / zero- and mean-ablated.

    ``batches``: ``(B, T)`` token tensors or ``(tokens, mask)`` for LMs returning logits; tokenizer
    dicts (``input_ids``, ``attention_mask``, optional ``special_tokens_mask``) for HF encoders.
    ``reconstruct`` maps flattened activations (N, d) to (N, d) — a SparseAutoEncoder works directly.
    ``mean_activation`` (d,) defaults to the mean over the evaluated (spliced) tokens.
    """
    if isinstance(reconstruct, nn.Module):
        reconstruct = sae_reconstruct_fn(reconstruct)
    was = model.training
    model.eval()
    p = resolve_point(model, point)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    items = []
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        inputs, target_mask, where = _unpack(batch)
        if where is not None and not splice_special and "special_tokens_mask" in batch:
            where = where & ~batch["special_tokens_mask"].bool()
        items.append(_to_device((inputs, target_mask, where), device))
    if not items:
        raise ValueError("splice_loss_recovered got no batches")
    if mean_activation is None:
        mean_activation = _mean_activation(model, items, p)
    sums = {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "mean": 0.0}
    kls = {"spliced": 0.0, "zero": 0.0, "mean": 0.0}
    n = 0
    try:
        for inputs, target_mask, where in items:
            clean, count, emb, _ = _loss(model, inputs, target_mask, None)
            sums["clean"] += clean
            n += count
            fns = {
                "spliced": reconstruct,
                "zero": torch.zeros_like,
                "mean": lambda x: mean_activation.to(x.dtype).expand_as(x),
            }
            for name, value_fn in fns.items():
                with patch(model, p, _replacer(value_fn, where)):
                    loss, _, _, kl = _loss(model, inputs, target_mask, emb)
                sums[name] += loss
                kls[name] += kl
    finally:
        model.train(was)
    c, s, z, m = (sums[k] / max(n, 1) for k in ("clean", "spliced", "zero", "mean"))
    metric = "embedding_cosine_drop" if isinstance(items[0][0], dict) else "next_token_ce"
    ks, kz, km = (kls[k] / max(n, 1) for k in ("spliced", "zero", "mean"))
    return SpliceResult(
        metric=metric,
        point=p.name,
        clean_loss=c,
        spliced_loss=s,
        zero_ablated_loss=z,
        mean_ablated_loss=m,
        loss_recovered=loss_recovered(c, s, z),
        loss_recovered_mean=loss_recovered(c, s, m),
        n=n,
        kl_spliced=ks,
        kl_zero_ablated=kz,
        kl_mean_ablated=km,
        kl_score=(kz - ks) / kz if kz > 1e-12 else float("nan"),
    )


def _mean_activation(model: nn.Module, items: list, p: Any) -> torch.Tensor:
    total: torch.Tensor | None = None
    count = 0
    for inputs, _, where in items:
        v = run_with_cache(model, inputs, [p])[p.name]
        flat = v.reshape(v.shape[0] * v.shape[1], -1).double()
        if where is not None:
            flat = flat[where.reshape(-1)]
        total = flat.sum(0) if total is None else total + flat.sum(0)
        count += flat.shape[0]
    assert total is not None  # the caller rejects an empty items
    return (total / max(count, 1)).float()
