"""Detection metrics for real-vs-fake experiments: equal error rate and the azimuthal power spectrum.

``eer`` uses scikit-learn's ROC curve and interpolates where the false-positive and false-negative
rates cross. ``azimuthal_power_spectrum`` is the 1-D radial average of the log power spectrum of
each (grey) image, the feature of Durall et al. 2020's spectral detector: GAN up-sampling leaves
peaks at high frequencies, white noise is flat.
"""

from __future__ import annotations

import numpy as np

__all__ = ["eer", "azimuthal_power_spectrum"]


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate in [0, 1] for ``labels`` (1 = positive, e.g. fake) and ``scores`` (higher = positive)."""
    from sklearn.metrics import roc_curve

    y, s = np.asarray(labels).ravel(), np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if set(np.unique(y)) != {0, 1}:
        raise ValueError("labels must hold both classes, 0 and 1")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or inf")
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1 - tpr
    i = int(np.nonzero(fnr <= fpr)[0][0])  # first threshold where the curves have crossed
    if i == 0:
        return float(fpr[0])
    # linear interpolation between the points before and after the crossing
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def azimuthal_power_spectrum(images: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """``(N, C, H, W)`` or ``(N, H, W)`` → ``(N, R)`` mean log power per integer radius from the centre of the
    shifted spectrum, out to its corner (``R = round(hypot(H/2, W/2)) + 1``)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4:
        x = x.mean(axis=1)
    if x.ndim != 3:
        raise ValueError(f"expected (N, C, H, W) or (N, H, W) images, got shape {x.shape}")
    n, h, w = x.shape
    power = np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean(axis=(1, 2), keepdims=True)), axes=(1, 2))) ** 2
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h // 2, xx - w // 2).round().astype(int)
    nb = int(r.max()) + 1  # up to the corner: the (Nyquist, Nyquist) frequency is where up-sampling peaks
    counts = np.bincount(r.ravel(), minlength=nb)
    out = np.stack([np.bincount(r.ravel(), weights=np.log(p.ravel() + eps), minlength=nb) / counts for p in power])
    return out.astype(np.float32)
