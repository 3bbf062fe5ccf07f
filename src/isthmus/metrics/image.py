"""Image quality: PSNR and SSIM from scikit-image (a maintained implementation, not ours), per image.

Inputs are ``(N, C, H, W)`` or ``(N, H, W)`` arrays in [0, 1]; outputs are per-image arrays so
recipes can pair them across arms. No LPIPS: its weights cannot be fetched offline.
"""

from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim", "region_psnr", "gradient_error"]


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
    return np.array([structural_similarity(x, y, data_range=data_range, channel_axis=0, win_size=win)
                     for x, y in zip(a, b)])


def region_psnr(reference: np.ndarray, test: np.ndarray, region: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR over the pixels of ``region`` (boolean, ``(N, 1, H, W)`` or the images' shape), per image;
    NaN for an image whose region is empty, inf for an exact match."""
    a, b = _pairs(reference, test)
    r = np.broadcast_to(np.asarray(region, bool).reshape(len(a), -1, *a.shape[-2:]), a.shape)
    err = ((a - b) ** 2 * r).reshape(len(a), -1).sum(1)
    count = r.reshape(len(a), -1).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(data_range ** 2 / (err / count))


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
