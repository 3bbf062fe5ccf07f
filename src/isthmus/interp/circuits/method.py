"""Circuit discovery from discrete SAE codes of attention-head outputs (O'Neill & Bui 2024, arXiv 2405.12522).

1. run the model on *positive* prompts (the next token needs the circuit) and minimally edited *negatives*;
2. take every head's output (default: its write into the residual stream, ``hook_result``), averaged over
   positions → one vector per (prompt, head);
3. train **one** SAE shared by all heads (ReLU, L1, tied pre-/post-bias, unit-norm encoder and decoder rows,
   full-batch Adam) on the vectors of a few (5–10) prompts;
4. code(prompt, head) = argmax latent;
5. node score(head) = number of codes it shows on positives but never on negatives (``score="set"``, the
   paper; ``normalize`` divides by the number of codes it shows at all); ``score="tv"`` is our variant:
   the total-variation distance between its code histograms on positives and negatives;
6. edge score(h1 → h2) = number of code pairs (c1, c2) seen on positives but never on negatives.

Works on any model whose per-head points the hooks know (the toy zoo and Hugging Face models).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from isthmus.interp.hooks import available_points, run_with_cache

__all__ = ["CircuitResult", "CodeSAE", "find_circuit", "head_outputs", "head_points", "node_scores", "edge_scores"]

Head = tuple[int, int]
_RESULT = re.compile(r"^blocks\.(\d+)\.attn\.hook_(result|z)$")


def head_points(model: nn.Module, activation: str = "result") -> list[str]:
    """The per-head points ``blocks.L.attn.hook_<activation>`` of ``model``, by layer."""
    found = [
        (int(m.group(1)), p) for p in available_points(model) if (m := _RESULT.match(p)) and m.group(2) == activation
    ]
    if not found:
        raise ValueError(f"{type(model).__name__} has no per-head points blocks.L.attn.hook_{activation}")
    return [p for _, p in sorted(found)]


def _positions(inputs: Any, position: str | torch.Tensor, t: int) -> torch.Tensor:
    """A (N, T) float weight over positions that sums to 1 per prompt."""
    if isinstance(position, torch.Tensor):
        w = position.float()
    elif position == "mean":
        am = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        tokens = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        w = am.float() if am is not None else torch.ones(tokens.shape[0], t)
    elif position == "last":
        tokens = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        am = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        last = (am.sum(1) - 1) if am is not None else torch.full((tokens.shape[0],), t - 1)
        w = torch.zeros(tokens.shape[0], t)
        w[torch.arange(len(w)), last.long()] = 1.0
    else:
        raise ValueError(f"position must be 'mean', 'last' or a (N, T) mask, got {position!r}")
    return w / w.sum(1, keepdim=True).clamp_min(1e-8)


def _slice(inputs: Any, s: slice) -> Any:
    return {k: v[s] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[s]


def _len(inputs: Any) -> int:
    return len(inputs["input_ids"] if isinstance(inputs, dict) else inputs)


@torch.no_grad()
def head_outputs(
    model: nn.Module,
    inputs: Any,
    points: Sequence[str] | None = None,
    position: str | torch.Tensor = "mean",
    batch_size: int = 64,
) -> torch.Tensor:
    """Per-head activations averaged over positions: ``(N, n_heads_total, d)`` (heads in point order).

    ``inputs``: token ids ``(N, T)`` or a tokenizer dict (padding masked out of the average).
    ``position``: ``"mean"`` (the paper), ``"last"``, or an ``(N, T)`` mask of positions to average.
    """
    points = list(points) if points is not None else head_points(model)
    out = []
    for s in range(0, _len(inputs), batch_size):
        batch = _slice(inputs, slice(s, s + batch_size))
        acts = run_with_cache(model, batch, points)
        t = acts[points[0]].shape[1]
        pos = position[s : s + batch_size] if isinstance(position, torch.Tensor) else position
        w = _positions(batch, pos, t)  # (B, T)
        out.append(torch.cat([torch.einsum("bthd,bt->bhd", acts[p].float(), w) for p in points], 1))
    return torch.cat(out)


class CodeSAE(nn.Module):
    """The paper's SAE: ``h = ReLU(W_e (x − b) + b_e)``, ``x̂ = W_d^T h + b``; rows of W_e and W_d unit-norm."""

    def __init__(self, d_in: int, d_sae: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_e = nn.Parameter(torch.randn(d_sae, d_in, generator=g))
        self.W_d = nn.Parameter(torch.randn(d_sae, d_in, generator=g))
        self.b_e = nn.Parameter(torch.zeros(d_sae))
        self.b = nn.Parameter(torch.zeros(d_in))
        self.renorm_()

    @torch.no_grad()
    def renorm_(self) -> None:
        for w in (self.W_e, self.W_d):
            w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def _project_grads(self) -> None:
        for w in (self.W_e, self.W_d):  # remove the gradient component along each (unit) row
            if w.grad is not None:
                w.grad -= (w.grad * w).sum(1, keepdim=True) * w

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b) @ self.W_e.T + self.b_e)  # (N, m)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encode(x)
        return h @ self.W_d + self.b, h

    def fit(self, x: torch.Tensor, l1: float = 0.02, epochs: int = 500, lr: float = 1e-3) -> "CodeSAE":
        """Full-batch training: ``MSE(x̂, x) + l1 · mean_batch ‖h‖₁`` (the paper's loss)."""
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        for _ in range(epochs):
            recon, h = self(x)
            loss = (recon - x).pow(2).mean() + l1 * h.abs().sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self._project_grads()
            opt.step()
            self.renorm_()
        return self


def node_scores(
    codes_pos: np.ndarray, codes_neg: np.ndarray, score: str = "set", normalize: bool = False
) -> np.ndarray:
    """Per-head score from codes ``(N, H)``: ``set`` = |codes on positives \\ codes on negatives| (optionally
    / |union|); ``tv`` = total-variation distance between the two code histograms."""
    out = np.zeros(codes_pos.shape[1])
    for h in range(codes_pos.shape[1]):
        p, n = codes_pos[:, h], codes_neg[:, h]
        if score == "set":
            only = len(set(p.tolist()) - set(n.tolist()))
            out[h] = only / len(set(p.tolist()) | set(n.tolist())) if normalize else only
        elif score == "tv":
            m = int(max(p.max(), n.max())) + 1
            out[h] = 0.5 * np.abs(np.bincount(p, minlength=m) / len(p) - np.bincount(n, minlength=m) / len(n)).sum()
        else:
            raise ValueError(f"score must be 'set' or 'tv', got {score!r}")
    return out


def edge_scores(codes_pos: np.ndarray, codes_neg: np.ndarray, layers: Sequence[int], d_sae: int) -> np.ndarray:
    """``E[i, j]`` (layer i < layer j) = number of code pairs seen on positives but never on negatives."""
    h = codes_pos.shape[1]
    e = np.zeros((h, h))
    for i in range(h):
        for j in range(h):
            if layers[i] < layers[j]:
                pp = set((codes_pos[:, i] * d_sae + codes_pos[:, j]).tolist())
                nn_ = set((codes_neg[:, i] * d_sae + codes_neg[:, j]).tolist())
                e[i, j] = len(pp - nn_)
    return e


@dataclass
class CircuitResult:
    """What :func:`find_circuit` found. Heads are ``(layer, head)``; scores align with ``heads``."""

    heads: list[Head]
    node_scores: np.ndarray  # (H,)
    edge_scores: np.ndarray  # (H, H), upstream row → downstream column
    timing: dict[str, float]
    codes_pos: np.ndarray  # (N_pos, H)
    codes_neg: np.ndarray  # (N_neg, H)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ranked_heads(self) -> list[Head]:
        return [self.heads[i] for i in np.argsort(-self.node_scores, kind="stable")]

    def ranked_edges(self, top: int | None = None) -> list[tuple[Head, Head, float]]:
        i, j = np.nonzero(self.edge_scores > 0)
        order = np.argsort(-self.edge_scores[i, j], kind="stable")[:top]
        return [(self.heads[i[k]], self.heads[j[k]], float(self.edge_scores[i[k], j[k]])) for k in order]

    @property
    def node_scores_from_edges(self) -> np.ndarray:
        """Each head's summed edge scores (in and out): the paper's edge-based node ranking, simplified."""
        return self.edge_scores.sum(0) + self.edge_scores.sum(1)


def find_circuit(
    model: nn.Module,
    positives: Any,
    negatives: Any,
    points: Sequence[str] | None = None,
    *,
    activation: str = "result",
    position: str | tuple = "mean",
    n_train_prompts: int = 10,
    d_sae: int = 200,
    l1: float = 0.02,
    epochs: int = 500,
    lr: float = 1e-3,
    score: str = "set",
    normalize: bool = False,
    standardize: bool = False,
    head_norm: str = "none",
    seed: int = 0,
    batch_size: int = 64,
) -> CircuitResult:
    """Rank attention heads (and head pairs) by the discrete SAE codes they show on positives only.

    ``points``: per-head points (default every ``blocks.L.attn.hook_<activation>``); ``position``:
    ``"mean"``/``"last"`` or a pair of (N, T) masks for (positives, negatives); ``n_train_prompts``: prompts
    drawn from positives ∪ negatives whose head vectors train the SAE; ``standardize`` scales all vectors
    by one global RMS before the SAE (so ``l1`` means the same on any model); ``head_norm`` (our addition):
    ``"scale"`` divides each head's vectors by that head's RMS norm, ``"center"`` also subtracts the head's
    mean over all prompts first, so the shared SAE codes *variation across prompts* rather than the
    identity of the head. Defaults are the paper's.
    """
    t0 = time.perf_counter()
    points = list(points) if points is not None else head_points(model, activation)
    pos_p, neg_p = position if isinstance(position, tuple) else (position, position)
    xp = head_outputs(model, positives, points, pos_p, batch_size)  # (Np, H, d)
    xn = head_outputs(model, negatives, points, neg_p, batch_size)
    layers = [int(hit.group(1)) if (hit := _RESULT.match(p)) else k for k, p in enumerate(points)]
    per_point = xp.shape[1] // len(points)
    heads = [(layers[k], h) for k in range(len(points)) for h in range(per_point)]
    t1 = time.perf_counter()
    x_all = torch.cat([xp, xn])  # (N, H, d)
    if head_norm in ("center", "scale"):
        if head_norm == "center":
            x_all = x_all - x_all.mean(0, keepdim=True)
        x_all = x_all / x_all.pow(2).sum(-1).mean(0).sqrt().clamp_min(1e-8)[None, :, None]
    elif head_norm != "none":
        raise ValueError(f"head_norm must be 'none', 'scale' or 'center', got {head_norm!r}")
    if standardize:
        scale = x_all.pow(2).sum(-1).mean().sqrt().clamp_min(1e-8) / x_all.shape[-1] ** 0.5
        x_all = x_all / scale
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(x_all), generator=g)[:n_train_prompts]
    with torch.enable_grad():
        sae = CodeSAE(x_all.shape[-1], d_sae, seed).fit(x_all[pick].reshape(-1, x_all.shape[-1]), l1, epochs, lr)
    t2 = time.perf_counter()
    with torch.no_grad():
        codes = sae.encode(x_all.reshape(-1, x_all.shape[-1])).argmax(-1).reshape(len(x_all), -1).numpy()
    cp, cn = codes[: len(xp)], codes[len(xp) :]
    nodes = node_scores(cp, cn, score, normalize)
    edges = edge_scores(cp, cn, [h[0] for h in heads], d_sae)
    t3 = time.perf_counter()
    cfg = dict(
        activation=activation,
        position=position if isinstance(position, str) else "mask",
        n_train_prompts=n_train_prompts,
        d_sae=d_sae,
        l1=l1,
        epochs=epochs,
        lr=lr,
        score=score,
        normalize=normalize,
        standardize=standardize,
        head_norm=head_norm,
        seed=seed,
    )
    return CircuitResult(
        heads,
        nodes,
        edges,
        {
            "collect_s": t1 - t0,
            "sae_s": t2 - t1,
            "score_s": t3 - t2,
            "total_s": t3 - t0,
            "n_forward": len(xp) + len(xn),
        },
        cp,
        cn,
        cfg,
    )
