"""Generative-sample quality in the features of a small fixed classifier: Fréchet distance and an IS analogue.

* :func:`frechet_distance` — the Fréchet (2-Wasserstein) distance between two Gaussians,
  ``‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})`` (Heusel et al., FID, arXiv 1706.08500), with the usual numerical
  care: ``scipy.linalg.sqrtm`` of the product, an ε·I offset on both covariances when the root is not finite,
  and the tiny imaginary part that round-off leaves dropped (an error if it is not tiny).
* :func:`inception_score` — ``exp(E_x KL(p(y|x) ‖ p(y)))`` (Salimans et al., arXiv 1606.03498) from class
  probabilities; it is ``n_classes`` for confident predictions spread uniformly over classes and 1 when every
  sample gets the same prediction.
* :class:`FeatureClassifier` — the "small fixed classifier" these are computed in (trained by
  :func:`isthmus.tasks.feature_classifier.train_feature_classifier`, which needs the data layer): an MLP on digits
  (8×8) or MNIST (28×28), or any images resized to the chosen side, trained deterministically from a seed and
  cached (in memory, and in ``cache_dir`` as safetensors when given). Its penultimate layer gives the
  features for the Fréchet distance, its softmax the probabilities for the IS analogue.

These are *analogues*: the numbers are comparable only between sample sets scored with the same classifier
(same data, image size and seed), never with published FID/IS values computed in Inception-v3 features.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "frechet_distance",
    "gaussian_stats",
    "frechet_distance_from_stats",
    "inception_score",
    "FeatureClassifier",
    "generative_report",
]


def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` (ddof=1) of ``features`` ``(n, d)`` in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (n >= 2, d), got shape {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product (e.g. fewer samples than features): regularise
        warnings.warn(
            f"frechet_distance: sqrtm not finite; adding {eps}*I to both covariances", RuntimeWarning, stacklevel=2
        )
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: sqrtm has imaginary part {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)
    return float(max(fd, 0.0))  # round-off can give -1e-12 for identical sets


def frechet_distance(
    features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor, eps: float = 1e-6
) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(n_a, d)`` and ``(n_b, d)``."""
    return frechet_distance_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b), eps=eps)


def inception_score(probs: np.ndarray | torch.Tensor, n_splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """IS analogue ``exp(E_x KL(p(y|x) ‖ p(y)))`` from class probabilities ``(n, C)``; returns (mean, std) over
    ``n_splits`` equal splits (std 0 for one split). Ranges from 1 to C."""
    p = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=np.float64)
    if p.ndim != 2 or (p < -1e-9).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("probs must be (n, C) rows of probabilities summing to 1")
    scores = []
    for part in np.array_split(p, n_splits):
        py = part.mean(0, keepdims=True)  # (1, C) marginal
        kl = (part * (np.log(part + eps) - np.log(py + eps))).sum(1)  # (n,)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


class FeatureClassifier(nn.Module):
    """MLP on flattened images ``(B, side*side)`` or ``(B, 1, side, side)``: ``features`` (penultimate, ReLU)
    and ``probs`` (softmax over classes). Inputs of another side are bilinearly resized first."""

    train_indices_: np.ndarray  # set by isthmus.tasks.feature_classifier (the rows it trained on)
    heldout_accuracy_: float

    def __init__(self, side: int, n_classes: int = 10, hidden: int = 256, feature_dim: int = 64) -> None:
        super().__init__()
        self.side = side
        self.body = nn.Sequential(nn.Linear(side * side, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, n_classes)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim == 2:
            s = int(round(x.shape[1] ** 0.5))
            x = x.reshape(-1, 1, s, s)
        if x.shape[-1] != self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return x.reshape(x.shape[0], -1)  # (B, side*side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self._prep(x)))

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
        return np.concatenate(
            [self.body(self._prep(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        )

    @torch.no_grad()
    def probs(self, x: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
        return np.concatenate(
            [F.softmax(self(x[i : i + batch_size]), -1).numpy() for i in range(0, len(x), batch_size)]
        )


def generative_report(
    clf: FeatureClassifier, samples: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor | None = None
) -> dict[str, float]:
    """Fréchet distance of ``samples`` to ``reference`` in ``clf`` features, the IS analogue of the samples,
    and (when ``labels`` are the classes the samples were conditioned on) the classifier's accuracy on them."""
    out = {
        "frechet": frechet_distance(clf.features(samples), clf.features(reference)),
        "inception_score": inception_score(clf.probs(samples))[0],
    }
    if labels is not None:
        pred = clf.probs(samples).argmax(1)
        out["class_accuracy"] = float((pred == np.asarray(labels)).mean())
    return out
