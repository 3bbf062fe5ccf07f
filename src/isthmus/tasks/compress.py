"""Split computing and efficient inference: split a network into head / bottleneck / tail, quantise the
tensor that crosses the link to 8 bits, and measure what it costs (FLOPs per part, bytes sent, CPU
latency as a ratio measured side by side).

* :func:`count_flops` — forward FLOPs through PyTorch's own ``FlopCounterMode`` (a maintained counter;
  a multiply-add counts as 2 FLOPs), so head and tail costs are counted the same way for every model.
* :func:`quantize_uint8` / :func:`dequantize_uint8` — per-tensor affine 8-bit quantisation of the
  bottleneck output (BottleFit transmits 8-bit features); :func:`transmitted_bytes` counts the payload.
* :class:`SplitModel` — ``head`` (on the device) → optional quantised link → ``tail`` (on the server).
* :func:`latency_ratio` — median wall time of two callables interleaved in one process, so machine
  load affects both alike (speed is reported as a ratio, never an absolute time).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = [
    "count_flops",
    "quantize_uint8",
    "dequantize_uint8",
    "transmitted_bytes",
    "SplitModel",
    "latency_ratio",
    "QuantizedTensor",
    "fake_quantize_uint8",
]


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Forward FLOPs of ``module(*inputs)`` (multiply-add = 2), counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    was = module.training
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    module.train(was)
    return int(counter.get_total_flops())


@dataclass
class QuantizedTensor:
    values: torch.Tensor  # uint8, same shape as the original
    scale: float
    zero: float

    @property
    def nbytes(self) -> int:
        return self.values.numel() + 8  # payload + two float32 parameters


def quantize_uint8(x: torch.Tensor) -> QuantizedTensor:
    """Per-tensor affine quantisation to 256 levels spanning ``[min, max]`` of ``x``."""
    x = x.detach()
    lo, hi = float(x.min()), float(x.max())
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    q = torch.clamp(torch.round((x - lo) / scale), 0, 255).to(torch.uint8)
    return QuantizedTensor(q, scale, lo)


def dequantize_uint8(q: QuantizedTensor) -> torch.Tensor:
    return q.values.to(torch.float32) * q.scale + q.zero


def fake_quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """Per-sample affine 8-bit quantise → dequantise (each sample's own ``[min, max]`` in 256 levels, as a
    device sends it), with a straight-through gradient so it can sit inside a trained graph."""
    flat = x.detach().flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    scale = torch.where(hi > lo, (hi - lo) / 255.0, torch.ones_like(hi))
    shape = (-1,) + (1,) * (x.ndim - 1)
    lo, scale = lo.view(shape), scale.view(shape)
    q = torch.clamp(torch.round((x.detach() - lo) / scale), 0, 255) * scale + lo
    return x + (q - x).detach()


def transmitted_bytes(x: torch.Tensor, quantized: bool) -> float:
    """Bytes per sample sent over the link for the bottleneck tensor ``x`` (batch first); a quantised
    batch also carries its scale and zero point (8 bytes), shared by its samples."""
    per = x[0].numel()
    return per + 8 / x.shape[0] if quantized else float(per * x.element_size())


class SplitModel(nn.Module):
    """``head`` → (8-bit link) → ``tail``; ``quantize=False`` sends float32."""

    def __init__(self, head: nn.Module, tail: nn.Module, quantize: bool = True) -> None:
        super().__init__()
        self.head, self.tail, self.quantize = head, tail, quantize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(x)
        if self.quantize and not self.training:  # training sees the float tensor (straight-through)
            z = dequantize_uint8(quantize_uint8(z))
        return self.tail(z)

    def costs(self, x: torch.Tensor) -> dict[str, float]:
        """FLOPs of head and tail for one batch ``x`` and the bytes per sample sent between them."""
        with torch.no_grad():
            z = self.head(x)
        return {
            "head_flops": count_flops(self.head, x) / len(x),
            "tail_flops": count_flops(self.tail, z) / len(x),
            "bytes_per_sample": float(transmitted_bytes(z, self.quantize)),
        }


def latency_ratio(a: Callable[[], object], b: Callable[[], object], repeats: int = 21, warmup: int = 3) -> float:
    """Median time of ``a`` over median time of ``b``, calls interleaved in one process."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta) / statistics.median(tb)
