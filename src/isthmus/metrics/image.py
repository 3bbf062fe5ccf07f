"""Image quality: PSNR and SSIM from scikit-image (a maintained implementation, not ours), per image.

Inputs are ``(N, C, H, W)`` or ``(N, H, W)`` arrays in [0, 1]; outputs are per-image arrays so
recipes can pair them across arms. No LPIPS: its weights cannot be fetched offline.
"""

from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim", "match_psnr", "region_psnr", "gradient_error"]


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 3:
        a, b = a[:, None], b[:, None]
    if a.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) or (N, H, W) images, got shape {a.shape}")
    return a, b


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pairs(reference, test)
    return np.array([peak_signal_noise_ratio(x, y, data_range=data_range) for x, y in zip(a, b)])


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    from skimage.metrics import structural_similarity

    a, b = _pairs(reference, test)
    win = min(7, a.shape[-1] - (1 - a.shape[-1] % 2), a.shape[-2] - (1 - a.shape[-2] % 2))
    return np.array(
        [structural_similarity(x, y, data_range=data_range, channel_axis=0, win_size=win) for x, y in zip(a, b)]
    )


def match_psnr(
    transform, images: np.ndarray, target_db: float, lo: float, hi: float, iters: int = 30, tol_db: float = 0.02
) -> float:
    """The strength ``s`` in ``[lo, hi]`` at which ``mean PSNR(images, transform(images, s))`` equals
    ``target_db``, by bisection (``transform`` must degrade more as ``s`` grows, deterministically)."""

    def gap(s: float) -> float:
        return float(psnr(images, np.clip(transform(images, s), 0, 1)).mean()) - target_db

    g_lo, g_hi = gap(lo), gap(hi)
    if g_lo < 0 or g_hi > 0:
        raise ValueError(
            f"target {target_db:.2f} dB is outside the range the strengths reach "
            f"({target_db + g_hi:.2f} to {target_db + g_lo:.2f} dB over [{lo}, {hi}])"
        )
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        g = gap(mid)
        if abs(g) <= tol_db:
            return mid
        lo, hi = (mid, hi) if g > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def region_psnr(reference: np.ndarray, test: np.ndarray, region: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR over the pixels of ``region`` (boolean, ``(N, 1, H, W)`` or the images' shape), per image;
    NaN for an image whose region is empty, inf for an exact match."""
    a, b = _pairs(reference, test)
    r = np.broadcast_to(np.asarray(region, bool).reshape(len(a), -1, *a.shape[-2:]), a.shape)
    err = ((a - b) ** 2 * r).reshape(len(a), -1).sum(1)
    count = r.reshape(len(a), -1).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(data_range**2 / (err / count))


def gradient_error(reference: np.ndarray, test: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Mean ``|∇test − ∇reference|`` (forward differences along x and y, all channels) over ``region``."""
    a, b = _pairs(reference, test)
    r = np.broadcast_to(np.asarray(region, bool).reshape(len(a), -1, *a.shape[-2:]), a.shape)
    d = b - a
    gx, gy = np.zeros_like(d), np.zeros_like(d)
    gx[..., :, :-1] = d[..., :, 1:] - d[..., :, :-1]
    gy[..., :-1, :] = d[..., 1:, :] - d[..., :-1, :]
    g = (np.abs(gx) + np.abs(gy)) * r
    return g.reshape(len(a), -1).sum(1) / np.maximum(1, r.reshape(len(a), -1).sum(1))
