"""Mask-aware skip connections from an encoder into a decoder (EMASC, LaDI-VTON; Morelli et al. 2023).

Each encoder tap goes through its own adapter — ``"nonlinear"`` (the released default): Conv3×3(c_in →
c_in) → SiLU → Conv3×3(c_in → c_out) with PyTorch's default init; ``"linear"``: one zero-initialised
Conv3×3, so at step 0 the skips add nothing — and is multiplied by ``(1 − mask)`` resized (nearest) to
its resolution, so nothing from the region being edited reaches the decoder (``gated=False`` is the
ablation without the gate). The outputs come back in the order given; the decoder adds each to its
injection point (see :class:`isthmus.models.skip_vae.SkipVAE`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskAwareSkip", "KINDS"]

KINDS = ("nonlinear", "linear")


class MaskAwareSkip(nn.Module):
    def __init__(
        self, in_channels: Sequence[int], out_channels: Sequence[int], kind: str = "nonlinear", gated: bool = True
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if len(in_channels) != len(out_channels) or not in_channels:
            raise ValueError(f"need one output width per tap, got {list(in_channels)} -> {list(out_channels)}")
        self.kind, self.gated = kind, gated
        adapters: list[nn.Module] = []
        for ci, co in zip(in_channels, out_channels):
            if kind == "linear":
                conv = nn.Conv2d(ci, co, 3, padding=1, bias=True)
                nn.init.zeros_(conv.weight)
                assert conv.bias is not None
                nn.init.zeros_(conv.bias)
                adapters.append(conv)
            else:
                adapters.append(
                    nn.Sequential(nn.Conv2d(ci, ci, 3, padding=1), nn.SiLU(), nn.Conv2d(ci, co, 3, padding=1))
                )
        self.adapters = nn.ModuleList(adapters)

    def forward(self, taps: Sequence[torch.Tensor], mask: torch.Tensor | None) -> list[torch.Tensor]:
        """``taps``: encoder features; ``mask`` ``(B, 1, H, W)``, 1 where the image is being edited."""
        if len(taps) != len(self.adapters):
            raise ValueError(f"expected {len(self.adapters)} encoder taps, got {len(taps)}")
        out = []
        for tap, adapter in zip(taps, self.adapters):
            h = adapter(tap)
            if self.gated:
                if mask is None:
                    raise ValueError("a gated skip needs the edit mask (pass gated=False for ungated skips)")
                h = h * (1 - F.interpolate(mask.float(), size=h.shape[-2:], mode="nearest"))
            out.append(h)
        return out
