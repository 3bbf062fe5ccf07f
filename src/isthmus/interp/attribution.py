"""Head attribution of SAE features trained on concatenated per-head attention outputs (``hook_z``).

Kissane et al., "Interpreting Attention Layer Outputs with Sparse Autoencoders" (arXiv 2406.17759): the
SAE input is ``concat_h z_h`` (H heads × d_head), so each decoder row splits into per-head blocks and the
norm of a block says how much of that feature lives in that head (**weight-based head attribution**).

Helpers here: stacking ``hook_z`` of several layers into one ``(N, H_total·d_head)`` matrix
(:func:`collect_head_outputs`), per-head decoder norms and their entropy (:func:`head_block_norms`,
:func:`attribution_entropy`), ground-truth head importance by mean-ablation (:func:`head_ablation_effects`),
splicing a reconstruction back into a model (:func:`splice_losses`) and feature/indicator correlation
(:func:`indicator_correlation`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.interp.hooks import patch, run_with_cache

if TYPE_CHECKING:
    from isthmus.interp.toy.model import ToyTransformer

__all__ = [
    "collect_head_outputs",
    "head_block_norms",
    "attribution_entropy",
    "head_ablation_effects",
    "head_direct_effects",
    "attention_to_sources",
    "splice_losses",
    "indicator_correlation",
    "masked_ce",
]


@torch.no_grad()
def collect_head_outputs(
    model: nn.Module, tokens: torch.Tensor, points: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """``hook_z`` at ``points`` (each (B, T, H, dh)) concatenated over layers and heads: (B, T, ΣH·dh)."""
    out = []
    for s in range(0, len(tokens), batch_size):
        acts = run_with_cache(model, tokens[s : s + batch_size], list(points), stop_early=True)
        out.append(torch.cat([acts[p].flatten(-2) for p in points], -1))
    return torch.cat(out)


def head_block_norms(w_dec: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(m, d) decoder rows over ``n_heads`` equal blocks → (m, n_heads) per-block L2 norms."""
    m, d = w_dec.shape
    if d % n_heads:
        raise ValueError(f"decoder width {d} is not divisible by n_heads={n_heads}")
    return w_dec.detach().reshape(m, n_heads, d // n_heads).norm(dim=-1)


def attribution_entropy(norms: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each feature's head distribution p_h ∝ ‖block_h‖²; 0 = one head, log H = uniform."""
    p = norms.pow(2)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def masked_ce(
    logits: torch.Tensor, tokens: torch.Tensor, target_mask: torch.Tensor, vocab: torch.Tensor | None = None
) -> float:
    """Next-token CE over targets ``tokens[:, t]`` with ``target_mask[:, t]`` (t ≥ 1). With ``vocab`` (token
    ids, holding every masked target) the softmax runs over those tokens only: "which of these tokens",
    leaving out how likely the model thinks that kind of token is."""
    m = target_mask[:, 1:]
    lg, tg = logits[:, :-1][m], tokens[:, 1:][m]
    if vocab is not None:
        remap = torch.full((logits.shape[-1],), -1, dtype=torch.long)
        remap[vocab] = torch.arange(len(vocab))
        lg, tg = lg[:, vocab], remap[tg]
        if (tg < 0).any():
            raise ValueError("masked_ce: a target token is outside `vocab`")
    return float(F.cross_entropy(lg, tg))


@torch.no_grad()
def head_ablation_effects(
    model: nn.Module, tokens: torch.Tensor, points: Sequence[str], target_masks: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean-ablate each head in turn (its z replaced by its mean over all tokens) and return the CE increase
    on each family's targets: ``(ΣH, F)`` in the order of ``target_masks``, plus the clean CEs."""
    z = {p: run_with_cache(model, tokens, [p], stop_early=True)[p] for p in points}
    clean_logits = model(tokens)
    clean = {f: masked_ce(clean_logits, tokens, m) for f, m in target_masks.items()}
    rows = []
    for p in points:
        mean = z[p].mean((0, 1))  # (H, dh)
        for h in range(mean.shape[0]):

            def fn(v: torch.Tensor, h: int = h, mean: torch.Tensor = mean) -> torch.Tensor:
                v = v.clone()
                v[:, :, h] = mean[h]
                return v

            with patch(model, p, fn):
                logits = model(tokens)
            rows.append([masked_ce(logits, tokens, m) - clean[f] for f, m in target_masks.items()])
    return torch.tensor(rows), clean


@torch.no_grad()
def head_direct_effects(
    model: nn.Module,
    tokens: torch.Tensor,
    n_layers: int,
    target_masks: dict[str, torch.Tensor],
    readout: Callable[[torch.Tensor], torch.Tensor] | None = None,
    vocabs: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Direct-path mean-ablation: remove ``(r_h − mean r_h)`` of each head's write ``r_h`` (``hook_result``)
    from the final residual stream only, so later layers still see the clean head; CE increase per family
    ``(ΣH, F)``. This names the head whose *output* carries a family's information to the logits (for
    induction: the induction head, not the previous-token head it reads from). ``readout`` maps the final
    residual to logits (default: a :class:`~isthmus.interp.toy.ToyTransformer`'s ``ln_final`` + ``unembed``);
    ``vocabs[family]`` restricts that family's CE to those tokens (see :func:`masked_ce`)."""
    vocabs = vocabs or {}
    toy = cast("ToyTransformer", model)  # read only by the default readout
    readout = readout or (lambda r: toy.unembed(toy.ln_final(r)))
    pts = [f"blocks.{i}.attn.hook_result" for i in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]
    acts = run_with_cache(model, tokens, pts, stop_early=False)
    resid = acts[pts[-1]]  # (B, T, d)
    ce = lambda lg: [masked_ce(lg, tokens, m, vocabs.get(f)) for f, m in target_masks.items()]  # noqa: E731
    clean = ce(readout(resid))
    rows = []
    for p in pts[:-1]:
        r = acts[p]  # (B, T, H, d)
        delta = r - r.mean((0, 1))
        for h in range(r.shape[2]):
            rows.append([a - b for a, b in zip(ce(readout(resid - delta[:, :, h])), clean)])
    return torch.tensor(rows)


@torch.no_grad()
def attention_to_sources(
    model: nn.Module, tokens: torch.Tensor, n_layers: int, sources: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Mean attention weight each head puts, at the positions with ``sources[f][b, t] >= 0``, on that source
    position: ``(ΣH, F)``. The classic head-finding score (induction score, previous-token score, ...)."""
    pts = [f"blocks.{i}.attn.hook_pattern" for i in range(n_layers)]
    acts = run_with_cache(model, tokens, pts, stop_early=True)
    pat = torch.cat([acts[p] for p in pts], 1)  # (B, ΣH, Tq, Tk)
    cols = []
    for src in sources.values():
        b, t = torch.nonzero(src >= 0, as_tuple=True)
        cols.append(pat[b, :, t, src[b, t]].mean(0) if len(b) else torch.zeros(pat.shape[1]))  # (ΣH,)
    return torch.stack(cols, 1)


@torch.no_grad()
def _reshape_to(part: torch.Tensor, shape: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A patch function that replaces an activation (B, T, *shape) by ``part`` reshaped to it."""
    return lambda v: part.reshape(*v.shape[:2], *shape)


def splice_losses(
    model: nn.Module,
    tokens: torch.Tensor,
    points: Sequence[str],
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    target_mask: torch.Tensor,
) -> dict[str, float]:
    """CE with clean activations, with ``points`` replaced by ``reconstruct`` of the clean concatenated
    ``hook_z`` (all layers at once, from the clean run) and with them zero-ablated; plus loss recovered."""
    from isthmus.metrics.sae import loss_recovered

    x = collect_head_outputs(model, tokens, points)  # (B, T, D)
    shapes = [run_with_cache(model, tokens[:1], [p])[p].shape[2:] for p in points]
    sizes = [int(torch.tensor(s).prod()) for s in shapes]
    b, t, d = x.shape
    x_hat = reconstruct(x.reshape(-1, d)).reshape(b, t, d)

    def run(parts: Sequence[torch.Tensor]) -> float:
        with contextlib.ExitStack() as stack:
            for p, part, s in zip(points, parts, shapes):
                stack.enter_context(patch(model, p, _reshape_to(part, s)))
            return masked_ce(model(tokens), tokens, target_mask)

    clean = masked_ce(model(tokens), tokens, target_mask)
    spliced = run(torch.split(x_hat, sizes, -1))
    zero = run([torch.zeros(b, t, n) for n in sizes])
    return {
        "clean_ce": clean,
        "spliced_ce": spliced,
        "zero_ce": zero,
        "loss_recovered": loss_recovered(clean, spliced, zero),
    }


def indicator_correlation(z: torch.Tensor, indicators: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each feature (N, m) with each binary/real indicator (N, F) → (m, F); constant
    columns give 0."""
    z = z.double() - z.double().mean(0)
    y = indicators.double() - indicators.double().mean(0)
    num = z.T @ y
    den = z.norm(dim=0)[:, None] * y.norm(dim=0)[None]
    return (num / den.clamp_min(1e-12)).float()
