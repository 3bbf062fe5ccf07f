"""Model compression for neural codecs (NeRV-style): global magnitude pruning and per-axis weight quantisation.

* :func:`prune_global` — global L1-magnitude pruning over a set of weight tensors (``torch.nn.utils.prune``,
  the maintained implementation); masks stay attached, so fine-tuning keeps the zeros; :func:`finalize_pruning`
  folds the masks into the weights.
* :func:`quantize_weights` — min–max quantisation to ``2^bits`` levels per output channel (axis 0) for
  2-D/4-D weights and per tensor otherwise, as NeRV/NeRV++'s ``evaluate`` does; the dequantised
  copy replaces the weights in place (pruned zeros stay zero); returns the largest error (≤ half a step).
* :func:`bits_per_pixel` — ``kept params × bits / pixels``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = [
    "prunable",
    "prune_global",
    "finalize_pruning",
    "sparsity",
    "quantize_tensor",
    "quantize_weights",
    "bits_per_pixel",
]


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every Linear/Conv2d weight (the tensors NeRV++'s ``train.py`` prunes: stem, block convs and linears)."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def prune_global(model: nn.Module, amount: float) -> None:
    """Zero the ``amount`` fraction of all prunable weights with the smallest magnitude (one global threshold)."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"prune amount is the fraction zeroed, in [0, 1); got {amount}")
    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=amount)


def finalize_pruning(model: nn.Module) -> None:
    """Make pruning permanent (``weight = weight_orig · mask``, masks removed)."""
    for m, name in prunable(model):
        if prune.is_pruned(m) and hasattr(m, name + "_mask"):
            prune.remove(m, name)


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros over the prunable weights."""
    ws = [getattr(m, n).detach() for m, n in prunable(model)]
    total = sum(w.numel() for w in ws)
    return float(sum((w == 0).sum().item() for w in ws) / max(1, total))


def quantize_tensor(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """Min–max quantise → dequantise ``w`` to ``2^bits`` levels (per axis-0 slice for 2-D/4-D tensors)."""
    if bits < 1 or bits > 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    flat = w.reshape(len(w), -1) if per_channel and w.dim() in (2, 4) else w.reshape(1, -1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    scale = ((hi - lo) / (2**bits - 1)).clamp_min(1e-12)
    q = torch.round((flat - lo) / scale) * scale + lo
    return q.reshape(w.shape)


@torch.no_grad()
def quantize_weights(model: nn.Module, bits: int = 8) -> float:
    """Quantise every parameter of ``model`` in place; returns the largest absolute change."""
    worst = 0.0
    for p in model.parameters():
        q = quantize_tensor(p.data, bits) * (p.data != 0)  # pruned zeros stay zero (the mask is side info)
        worst = max(worst, float((q - p.data).abs().max()))
        p.data.copy_(q)
    return worst


def bits_per_pixel(n_params: int, keep: float, bits: int, pixels: int) -> float:
    if pixels < 1 or not 0 < keep <= 1:
        raise ValueError(f"need pixels >= 1 and 0 < keep <= 1, got {pixels}, {keep}")
    return n_params * keep * bits / pixels
