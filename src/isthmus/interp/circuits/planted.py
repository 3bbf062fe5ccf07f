"""A ToyTransformer with hand-set weights: a previous-token head and an induction head among random
distractor heads, so the circuit is known exactly (no ablation needed to define it).

Residual stream layout (``d_model`` dims, one-hot sub-spaces)::

    [ tok (V) | pos (T) | prev (V) | out (V) | junk (rest) ]

* layer 0, head ``prev_head``: attends from position t to t-1 (QK on ``pos``) and copies the token there
  into ``prev`` (OV: ``tok`` → ``prev``);
* layer 1, head ``ind_head``: attends from t to every j whose previous token equals the current token
  (Q reads ``tok``, K reads ``prev``) and copies that token into ``out`` (OV: ``tok`` → ``out``);
* the unembedding reads ``out`` only;
* every other head is a distractor: random Q/K/V reading the whole stream, writing into ``junk`` only,
  its W_O rescaled so its mean output norm equals the circuit head's of its layer — so ablating it changes the logits only through LayerNorm's scale.

The model is attention-only; LayerNorms are left at their defaults (they rescale the nearly constant-norm
stream), so the mechanism is exact up to softmax sharpness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch

from isthmus.interp.hooks import run_with_cache
from isthmus.interp.toy.model import Attention, Block, ToyConfig, ToyTransformer

__all__ = ["PlantedCircuit", "planted_induction", "induction_pairs"]


@dataclass
class PlantedCircuit:
    model: ToyTransformer
    circuit: list[tuple[int, int]]  # (layer, head) of the circuit heads
    edges: list[tuple[tuple[int, int], tuple[int, int]]]  # true (upstream, downstream) head pairs
    vocab: int
    half: int
    meta: dict = field(default_factory=dict)


def planted_induction(
    seed: int = 0,
    vocab: int = 32,
    half: int = 10,
    n_heads: int = 6,
    d_model: int = 128,
    d_head: int = 32,
    prev_head: int = 1,
    ind_head: int = 2,
    gain: float = 12.0,
    distractor_std: float = 0.6,
) -> PlantedCircuit:
    """Build the planted 2-layer model; distractor weights depend on ``seed``."""
    t = 2 * half + 1
    tok, pos, prev, out = 0, vocab, vocab + t, 2 * vocab + t
    junk = 3 * vocab + t
    if junk >= d_model or max(vocab, t) > d_head:
        raise ValueError(f"planted_induction: need d_model > {junk} and d_head >= {max(vocab, t)}")
    cfg = ToyConfig(
        vocab_size=vocab,
        n_ctx=t,
        n_layers=2,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_head,
        attn_only=True,
        seed=seed,
    )
    model = ToyTransformer(cfg)
    g = torch.Generator().manual_seed(seed)
    eye_v, eye_t = torch.eye(vocab), torch.eye(t)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in [cast(Block, b).ln1 for b in model.blocks] + [model.ln_final]:
            ln.weight.fill_(1.0)
        model.embed.weight[:, tok : tok + vocab] = eye_v
        model.pos_embed.weight[:, pos : pos + t] = eye_t
        model.unembed.weight[:, out : out + vocab] = eye_v * gain
        for layer, block in enumerate(model.blocks):
            a = cast(Attention, block.attn)
            for h in range(n_heads):
                q, k, v = (w.weight[h * d_head : (h + 1) * d_head] for w in (a.W_Q, a.W_K, a.W_V))  # (dh, d)
                o = a.W_O.weight[:, h * d_head : (h + 1) * d_head]  # (d, dh)
                if layer == 0 and h == prev_head:
                    q[: t - 1, pos + 1 : pos + t] = eye_t[: t - 1, : t - 1] * gain  # query at t looks for key t-1
                    k[:t, pos : pos + t] = eye_t * gain
                    v[:vocab, tok : tok + vocab] = eye_v
                    o[prev : prev + vocab, :vocab] = eye_v
                elif layer == 1 and h == ind_head:
                    q[:vocab, tok : tok + vocab] = eye_v * gain
                    k[:vocab, prev : prev + vocab] = eye_v * gain
                    v[:vocab, tok : tok + vocab] = eye_v
                    o[out : out + vocab, :vocab] = eye_v
                else:
                    for w in (q, k, v):
                        w.copy_(torch.randn(w.shape, generator=g) * distractor_std)
                    o[junk:] = torch.randn(d_model - junk, d_head, generator=g) * distractor_std / d_head**0.5
    model.eval()
    _match_output_norms(model, [(0, prev_head), (1, ind_head)], vocab, half, seed)
    return PlantedCircuit(
        model,
        [(0, prev_head), (1, ind_head)],
        [((0, prev_head), (1, ind_head))],
        vocab,
        half,
        {"layout": dict(tok=tok, pos=pos, prev=prev, out=out, junk=junk)},
    )


@torch.no_grad()
def _match_output_norms(
    model: ToyTransformer, circuit: list[tuple[int, int]], vocab: int, half: int, seed: int
) -> None:
    """Rescale each distractor's W_O so its mean output norm equals its layer's circuit head's (layer by
    layer, as later layers see earlier writes): no head stands out by the size of its write alone."""
    tokens = torch.cat(induction_pairs(64, seed + 1, vocab, half)[:2])
    heads = model.cfg.n_heads
    dh = model.cfg.head_dim
    for layer, block in enumerate(model.blocks):
        point = f"blocks.{layer}.attn.hook_result"
        norms = run_with_cache(model, tokens, [point])[point].norm(dim=-1).mean((0, 1))  # (H,)
        target = norms[[h for lay, h in circuit if lay == layer][0]]
        for h in range(heads):
            if (layer, h) not in circuit:
                cast(Attention, block.attn).W_O.weight[:, h * dh : (h + 1) * dh] *= target / norms[h].clamp_min(1e-8)


def induction_pairs(
    n: int, seed: int = 0, vocab: int = 32, half: int = 10, distinct: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positives ``BOS r r`` (second copy predictable by induction), negatives ``BOS r s`` (second half fresh
    tokens: the same first half, nothing to copy), and the mask of positions whose next token is scored.

    ``distinct`` draws each half without repeated tokens, so induction has one unambiguous match.
    """
    g = torch.Generator().manual_seed(seed)
    if distinct:
        r = torch.rand(n, vocab - 1, generator=g).argsort(1)[:, :half] + 1
        s = torch.rand(n, vocab - 1, generator=g).argsort(1)[:, :half] + 1
    else:
        r = torch.randint(1, vocab, (n, half), generator=g)
        s = torch.randint(1, vocab, (n, half), generator=g)
    bos = torch.zeros(n, 1, dtype=torch.long)
    pos, neg = torch.cat([bos, r, r], 1), torch.cat([bos, r, s], 1)
    mask = torch.zeros_like(pos, dtype=torch.bool)
    mask[:, half + 2 :] = True  # tokens predictable from the copy (the 2nd copy from its 2nd token on)
    return pos, neg, mask
