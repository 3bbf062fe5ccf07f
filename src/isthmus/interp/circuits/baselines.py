"""Per-head reference scores for circuit discovery, on paired positives/negatives of equal length.

* :func:`mean_ablation` — replace one head's ``hook_z`` by its mean over all prompts; score = |metric drop|
  (one forward pass per head per prompt: the expensive reference, and the ground truth on trained models);
* :func:`activation_patching` — replace one head's ``hook_z`` on each positive by its value on the paired
  negative; score = |metric change|;
* :func:`attribution_patching` — the first-order estimate of activation patching:
  |Σ ∂metric/∂z · (z_neg − z_pos)| per head, from one forward+backward pass (Nanda 2023; Syed et al. 2023);
* :func:`output_difference` — ‖mean over positives − mean over negatives‖ of the position-averaged head
  output (no model surgery; the cheap baseline).

``metric(logits, tokens, mask)``: default :func:`target_logprob`, the mean log-probability of the tokens at
``mask`` positions (each predicted from the position before it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from isthmus.interp.circuits.method import head_outputs, head_points
from isthmus.interp.hooks import capture, patch

__all__ = [
    "BaselineResult",
    "target_logprob",
    "mean_ablation",
    "activation_patching",
    "attribution_patching",
    "output_difference",
    "BASELINES",
]

Metric = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class BaselineResult:
    scores: np.ndarray  # (H,), heads in point order, layer-major
    seconds: float
    n_forward: int  # forward passes of one prompt (a backward counts as one more)
    signed: np.ndarray | None = None


def target_logprob(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean log p(tokens[t] | prefix) over ``mask[t]`` (positions t ≥ 1)."""
    lp = logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return lp[mask[:, 1:]].mean()


def _z_points(model: nn.Module) -> list[str]:
    return head_points(model, "z")


def _run_metric(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor, metric: Metric) -> float:
    with torch.no_grad():
        return float(metric(model(tokens), tokens, mask))


def _per_head_patch(
    model: nn.Module,
    positives: torch.Tensor,
    mask: torch.Tensor,
    metric: Metric,
    replacement: Callable[[str], torch.Tensor],
) -> tuple[np.ndarray, int]:
    """Signed metric change when each head's z is replaced by ``replacement(point)[..., h, :]``."""
    clean = _run_metric(model, positives, mask, metric)
    out, n = [], 0
    for p in _z_points(model):
        rep = replacement(p)
        for h in range(rep.shape[2]):

            def fn(z: torch.Tensor, h: int = h, rep: torch.Tensor = rep) -> torch.Tensor:
                z = z.clone()
                z[:, :, h] = rep[..., h, :].expand_as(z[:, :, h])
                return z

            with patch(model, p, fn):
                out.append(_run_metric(model, positives, mask, metric) - clean)
            n += len(positives)
    return np.asarray(out), n


def _z_cache(model: nn.Module, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad(), capture(model, _z_points(model)) as acts:
        model(tokens)
    return dict(acts)


def mean_ablation(
    model: nn.Module,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor,
    metric: Metric = target_logprob,
) -> BaselineResult:
    """|metric change| on positives when a head's z is replaced by its per-position mean over all prompts."""
    t0 = time.perf_counter()
    means = {p: v.mean(0, keepdim=True) for p, v in _z_cache(model, torch.cat([positives, negatives])).items()}
    signed, n = _per_head_patch(model, positives, mask, metric, lambda p: means[p])
    n += len(positives) + len(negatives) + len(positives)
    return BaselineResult(np.abs(signed), time.perf_counter() - t0, n, signed)


def activation_patching(
    model: nn.Module,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor,
    metric: Metric = target_logprob,
) -> BaselineResult:
    """|metric change| on positives when a head's z comes from the paired negative prompt."""
    t0 = time.perf_counter()
    corrupt = _z_cache(model, negatives)
    signed, n = _per_head_patch(model, positives, mask, metric, lambda p: corrupt[p])
    return BaselineResult(np.abs(signed), time.perf_counter() - t0, n + len(negatives) + len(positives), signed)


def attribution_patching(
    model: nn.Module,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor,
    metric: Metric = target_logprob,
) -> BaselineResult:
    """Gradient estimate of activation patching: |Σ_{b,t,k} ∂metric/∂z · (z_neg − z_pos)| per head."""
    t0 = time.perf_counter()
    corrupt = _z_cache(model, negatives)
    points = _z_points(model)
    with torch.enable_grad(), capture(model, points, detach=False) as store:
        value = metric(model(positives), positives, mask)
        grads = torch.autograd.grad(value, [store[p] for p in points])
    signed = torch.cat([(g * (corrupt[p] - store[p].detach())).sum((0, 1, 3)) for p, g in zip(points, grads)])
    return BaselineResult(
        signed.abs().numpy(), time.perf_counter() - t0, 2 * len(positives) + len(negatives), signed.numpy()
    )


def output_difference(
    model: nn.Module,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor | None = None,
    metric: Metric | None = None,
    points: Sequence[str] | None = None,
) -> BaselineResult:
    """‖mean_pos − mean_neg‖ of each head's position-averaged output (``hook_result`` by default)."""
    t0 = time.perf_counter()
    xp, xn = head_outputs(model, positives, points), head_outputs(model, negatives, points)
    s = (xp.mean(0) - xn.mean(0)).norm(dim=-1).numpy()
    return BaselineResult(s, time.perf_counter() - t0, len(positives) + len(negatives))


BASELINES = {
    "mean_ablation": mean_ablation,
    "activation_patching": activation_patching,
    "attribution_patching": attribution_patching,
    "output_difference": output_difference,
}
