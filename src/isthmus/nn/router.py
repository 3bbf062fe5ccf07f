"""Per-layer routers that decide, per input sequence, whether a transformer layer runs (FiRST, seed 43).

Each routed layer ``l`` gets a small router (2-layer MLP on the mean-pooled layer input, sigmoid
output ``p_l``: the keep probability). Two modes:

* ``soft`` (training): ``h_{l+1} = p_l · layer_l(h_l) + (1 − p_l) · h_l``, so the task loss and a
  sparsity penalty ``λ · mean(p)`` both reach the routers;
* ``hard`` (inference): layer ``l`` runs for a sequence iff ``p_l > threshold``; skipped rows are
  not computed at all (the compute saving), and the decision is fixed per sequence, which is what
  keeps a decoder's KV cache consistent in the paper.

The comparison is done in logit space (``logit(p) > logit(threshold)``) so that threshold 0 keeps
every layer and threshold 1 skips every routed layer exactly, even where a float32 sigmoid would
round ``p`` to 0 or 1. Input-agnostic baselines pass an explicit ``skip`` matrix instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn

__all__ = ["masked_mean", "LayerRouter", "RoutedLayers", "RoutedOutput"]

LayerCall = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def masked_mean(h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the token axis of ``h`` ``(B, T, d)``, counting only positions where ``mask`` ``(B, T)`` is 1."""
    if mask is None:
        return h.mean(1)
    if mask.shape != h.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} must be (batch, tokens) = {tuple(h.shape[:2])}")
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class LayerRouter(nn.Module):
    """Keep-probability logit of one layer for each sequence: ``MLP(masked_mean(h))`` → ``(B,)``."""

    def __init__(self, d_model: int, hidden: int = 64, init_bias: float = 0.0) -> None:
        super().__init__()
        if d_model < 1 or hidden < 1:
            raise ValueError(f"LayerRouter needs d_model >= 1 and hidden >= 1, got {d_model}, {hidden}")
        first, out = nn.Linear(d_model, hidden), nn.Linear(hidden, 1)  # this order: seeded inits unchanged
        nn.init.constant_(out.bias, init_bias)  # init_bias > 0 starts close to "keep everything"
        self.net = nn.Sequential(first, nn.GELU(), out)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(masked_mean(h, mask)).squeeze(-1)


@dataclass
class RoutedOutput:
    hidden: torch.Tensor  # (B, T, d) output of the stack
    keep_prob: torch.Tensor  # (B, L) router keep probabilities (1 for unrouted / forced layers)
    kept: torch.Tensor  # (B, L) bool: the layer ran for this sequence (soft mode: p > 0.5, for reporting)

    @property
    def skipped(self) -> torch.Tensor:
        """Layers skipped per sequence, ``(B,)``."""
        return (~self.kept).sum(1).to(torch.float32)


def _default_call(layer: nn.Module, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return layer(h)


class RoutedLayers(nn.Module):
    """A stack of (frozen or trainable) layers with one :class:`LayerRouter` per routed layer.

    ``call(layer, h, mask) -> h`` adapts a layer's signature (e.g. a Hugging Face block needing an
    attention mask); ``routed`` lists the layer indices that may be skipped (default: all).
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        d_model: int,
        *,
        call: LayerCall | None = None,
        routed: Sequence[int] | None = None,
        hidden: int = 64,
        init_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.call = call or _default_call
        n = len(self.layers)
        self.routed = sorted(set(range(n) if routed is None else routed))
        if any(not 0 <= i < n for i in self.routed):
            raise ValueError(f"routed layer indices must lie in [0, {n}), got {self.routed}")
        self.routers = nn.ModuleDict({str(i): LayerRouter(d_model, hidden, init_bias) for i in self.routed})

    def router_parameters(self) -> list[nn.Parameter]:
        return list(self.routers.parameters())

    def forward(
        self,
        h: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        mode: Literal["soft", "hard"] = "hard",
        threshold: float = 0.5,
        skip: torch.Tensor | None = None,
    ) -> RoutedOutput:
        """Run the stack. ``skip`` ``(B, L)`` bool (or ``(L,)``) forces decisions and bypasses the routers."""
        if mode not in ("soft", "hard"):
            raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        B, L = h.shape[0], len(self.layers)
        if skip is not None:
            skip = skip.to(torch.bool)
            skip = skip.expand(B, L) if skip.dim() == 1 else skip
            if skip.shape != (B, L):
                raise ValueError(f"skip must be (batch, layers) = {(B, L)} or (layers,), got {tuple(skip.shape)}")
        cut = torch.logit(torch.tensor(float(threshold), dtype=torch.float64))  # -inf at 0, +inf at 1
        probs, kept = [], []
        for i, layer in enumerate(self.layers):
            p = torch.ones(B, dtype=h.dtype, device=h.device)
            if skip is not None:
                keep = ~skip[:, i]
            elif str(i) in self.routers:
                logit = self.routers[str(i)](h, mask)
                p = torch.sigmoid(logit)
                if mode == "soft":
                    out = self.call(layer, h, mask)
                    w = p.view(B, *([1] * (h.dim() - 1)))
                    h = w * out + (1 - w) * h
                    probs.append(p)
                    kept.append(p > 0.5)
                    continue
                keep = logit.double() > cut
            else:
                keep = torch.ones(B, dtype=torch.bool, device=h.device)
            probs.append(p)
            kept.append(keep)
            h = self._run_rows(layer, h, mask, keep)
        return RoutedOutput(h, torch.stack(probs, 1), torch.stack(kept, 1))

    def _run_rows(
        self, layer: nn.Module, h: torch.Tensor, mask: torch.Tensor | None, keep: torch.Tensor
    ) -> torch.Tensor:
        """Apply ``layer`` to the kept rows only; skipped rows pass through untouched (and cost nothing)."""
        if bool(keep.all()):
            return self.call(layer, h, mask)
        if not bool(keep.any()):
            return h
        out = h.clone()
        out[keep] = self.call(layer, h[keep], None if mask is None else mask[keep])
        return out
