"""Fit a video as a neural representation (NeRV-style overfitting codec), then prune, fine-tune and quantise.

:func:`fit_video` trains a frame-index → frame model on every frame of one clip with NeRV++'s recipe:
loss ``0.7·L1 + 0.3·(1 − SSIM)`` (``Fusion6``), Adam (β1 = 0.5, β2 = 0.999), a warm-up over the first
``warmup`` of epochs that starts at 0.1× the learning rate, then cosine decay to 0 per iteration. The
model is judged on the frames it was fitted to (a codec, as NeRV and NeRV++ evaluate).
:func:`compress_video_model` is the codec pipeline: global magnitude pruning, a fine-tune with the masks
held, 8-bit per-channel quantisation, and the bits per pixel of the kept weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from isthmus.metrics.image import psnr, ssim
from isthmus.nn.compress import bits_per_pixel, finalize_pruning, prune_global, quantize_weights, sparsity
from isthmus.nn.ssim import ssim as ssim_torch

__all__ = ["VideoFit", "fit_video", "evaluate_video", "compress_video_model", "CompressedVideo", "frame_positions"]


def frame_positions(n: int) -> torch.Tensor:
    """NeRV's frame inputs ``i / n`` (in [0, 1), not [0, 1])."""
    return torch.arange(n, dtype=torch.float32) / n


@dataclass
class VideoFit:
    psnr_curve: list[float] = field(default_factory=list)  # mean PSNR over frames, sampled during training
    loss_curve: list[float] = field(default_factory=list)  # mean training loss per epoch
    steps: int = 0


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.7 * (out - target).abs().mean() + 0.3 * (1 - ssim_torch(out, target).mean())


@torch.no_grad()
def _reconstruct(model: nn.Module, n: int, batch: int = 8) -> np.ndarray:
    model.eval()
    t = frame_positions(n)
    out = torch.cat([model(t[i : i + batch]) for i in range(0, n, batch)]).clamp(0, 1).numpy()
    model.train()
    return out


def evaluate_video(model: nn.Module, frames: np.ndarray) -> dict[str, float]:
    """Mean per-frame PSNR (dB) and SSIM of the model's reconstruction of ``frames`` ``(T, 3, H, W)``."""
    rec = _reconstruct(model, len(frames))
    return {"psnr": float(psnr(frames, rec).mean()), "ssim": float(ssim(frames, rec).mean())}


def fit_video(
    model: nn.Module,
    frames: np.ndarray,
    epochs: int,
    lr: float = 5e-4,
    batch_size: int = 1,
    warmup: float = 0.2,
    seed: int = 0,
    eval_every: int = 0,
) -> VideoFit:
    """Overfit ``model`` to ``frames`` ``(T, 3, H, W)`` in [0, 1]; ``eval_every`` epochs log PSNR (0: ~20 points)."""
    x = torch.as_tensor(np.asarray(frames, np.float32))
    if x.dim() != 4 or x.shape[1] != 3 or not torch.isfinite(x).all():
        raise ValueError(f"frames must be finite (T, 3, H, W), got {tuple(x.shape)}")
    n = len(x)
    t = frame_positions(n)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    per_epoch = math.ceil(n / batch_size)
    total, warm = epochs * per_epoch, warmup * epochs * per_epoch
    every = eval_every or max(1, epochs // 20)
    fit = VideoFit()
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for i in range(0, n, batch_size):
            k = fit.steps
            scale = (
                0.1 + 0.9 * k / warm if k < warm else 0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, total - warm)))
            )
            for group in opt.param_groups:
                group["lr"] = lr * scale
            idx = perm[i : i + batch_size]
            loss = _loss(model(t[idx]), x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            fit.steps += 1
        fit.loss_curve.append(tot / n)
        if (ep + 1) % every == 0 or ep == epochs - 1:
            rec = _reconstruct(model, n)
            fit.psnr_curve.append(float(psnr(frames, rec).mean()))
    return fit


@dataclass
class CompressedVideo:
    psnr_pruned: float  # after pruning + fine-tune, before quantisation
    psnr: float  # after quantisation: the codec's quality
    ssim: float
    bpp: float
    sparsity: float
    max_quant_error: float


def compress_video_model(
    model: nn.Module,
    frames: np.ndarray,
    prune_amount: float,
    finetune_epochs: int,
    lr: float = 5e-4,
    bits: int = 8,
    batch_size: int = 1,
    seed: int = 0,
) -> CompressedVideo:
    """Prune ``prune_amount`` of the weights (global L1), fine-tune with the masks (no warm-up), quantise."""
    n_params = sum(p.numel() for p in model.parameters())
    prune_global(model, prune_amount)
    fit_video(model, frames, finetune_epochs, lr=lr, batch_size=batch_size, warmup=0.0, seed=seed + 1)
    finalize_pruning(model)
    pruned = evaluate_video(model, frames)["psnr"]
    sp = sparsity(model)
    err = quantize_weights(model, bits)
    q = evaluate_video(model, frames)
    keep = 1.0 - prune_amount
    t, _, h, w = np.asarray(frames).shape
    return CompressedVideo(
        psnr_pruned=pruned,
        psnr=q["psnr"],
        ssim=q["ssim"],
        bpp=bits_per_pixel(n_params, keep, bits, t * h * w),
        sparsity=sp,
        max_quant_error=err,
    )
