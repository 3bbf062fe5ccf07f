"""One image split and one sample scorer shared by the latent-generation recipes (STARFlow, RAE-diffusion).

:func:`image_split` cuts MNIST t10k (scikit-learn digits when MNIST is absent) at a chosen side into fixed
train / validation / test rows (seed 0, the same for every arm and seed). :class:`SampleScorer` trains the
fixed feature classifier behind the Fréchet distance on the **training and validation rows only**, so it
has never seen the test images that FD is measured against (the referee cards' requirement), and gives:

* :meth:`SampleScorer.score` — FD (and its log), the IS analogue and, for class-conditional samples, the
  classifier's accuracy on the conditioning labels, against the test (or validation) images;
* :meth:`SampleScorer.fd_valid` — the cards' FD-VALID numbers: FD(train real, test) must be at most a fifth
  of FD(blurred test, test) (Gaussian blur σ = 1 px), and the blurred FD below that of uniform noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from isthmus.metrics.generative import frechet_distance, inception_score
from isthmus.tasks.feature_classifier import train_feature_classifier

__all__ = ["ImageSplit", "image_split", "SampleScorer", "gaussian_blur", "balanced_labels", "guided_score"]


@dataclass
class ImageSplit:
    x_train: torch.Tensor  # (N, 1, side, side) in [0, 1]
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    rows_fit: np.ndarray  # rows of the source used for training + validation (what the classifier may see)
    source: str
    side: int


def image_split(side: int = 16, n_train: int = 7000, n_val: int = 1000, n_test: int = 2000) -> ImageSplit:
    from isthmus.data import load_digits, load_mnist
    from isthmus.data.paths import DataNotFoundError

    try:
        t, name = load_mnist(split="test"), "mnist"
    except DataNotFoundError:
        t, name = load_digits(as_images=True), "digits"
    x = torch.as_tensor(np.asarray(t.X), dtype=torch.float32)
    if x.shape[-1] != side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    x, y = x.clamp(0, 1), torch.as_tensor(np.asarray(t.y)).long()
    n = len(x)
    if n_train + n_val + n_test > n:  # digits: keep the proportions
        k = n / (n_train + n_val + n_test)
        n_train, n_val, n_test = int(n_train * k), int(n_val * k), n - int(n_train * k) - int(n_val * k)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    tr, va, te = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val : n_train + n_val + n_test]
    return ImageSplit(
        x[tr],
        y[tr],
        x[va],
        y[va],
        x[te],
        y[te],
        np.sort(torch.cat([tr, va]).numpy()),
        f"{name} at {side}x{side}: {len(tr)} train / {len(va)} val / {len(te)} test",
        side,
    )


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` images (radius 3σ, replicate padding)."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class SampleScorer:
    def __init__(self, split: ImageSplit, clf_epochs: int = 15) -> None:
        self.split = split
        dataset = split.source.split(" ")[0]
        self.clf = train_feature_classifier(
            dataset, side=split.side, seed=0, epochs=clf_epochs, train_indices=split.rows_fit
        )
        self._ref = {"test": self.clf.features(split.x_test), "val": self.clf.features(split.x_val)}

    def score(
        self, samples: torch.Tensor, labels: torch.Tensor | None = None, reference: str = "test"
    ) -> dict[str, float]:
        samples = samples.reshape(len(samples), 1, self.split.side, self.split.side).clamp(0, 1)
        if not torch.isfinite(samples).all():
            raise ValueError("samples hold NaN or inf")
        fd = frechet_distance(self.clf.features(samples), self._ref[reference])
        p = self.clf.probs(samples)
        out = {"frechet": fd, "log_frechet": math.log(max(fd, 1e-12)), "inception_score": inception_score(p)[0]}
        if labels is not None:
            out["class_accuracy"] = float((p.argmax(1) == np.asarray(labels)).mean())
        return out

    def fd_valid(self) -> dict[str, float]:
        s = self.split
        n = min(len(s.x_train), len(s.x_test))
        ref = self._ref["test"]
        noise = torch.rand(s.x_test.shape, generator=torch.Generator().manual_seed(0))
        out = {
            "real": frechet_distance(self.clf.features(s.x_train[:n]), ref),
            "blurred": frechet_distance(self.clf.features(gaussian_blur(s.x_test)), ref),
            "noise": frechet_distance(self.clf.features(noise), ref),
            "clf_heldout_accuracy": float(self.clf.heldout_accuracy_),
        }
        out["ok"] = float(out["real"] <= 0.2 * out["blurred"] and out["blurred"] < out["noise"])
        return out


def balanced_labels(n: int, n_classes: int = 10) -> torch.Tensor:
    """``n // n_classes`` labels of each class, in class order."""
    return torch.arange(n_classes).repeat_interleave(n // n_classes)


def guided_score(
    scorer: SampleScorer, draw, weights: tuple[float, ...], n_select: int, n_samples: int, seed: int
) -> tuple[dict[str, float], dict[str, float], torch.Tensor]:
    """Choose the guidance weight on validation FD, then score ``n_samples`` class-balanced samples on test.

    ``draw(n, labels, w, generator) -> images``. Returns (scores at the chosen w plus ``w_star``, validation
    FD per weight, the images). Selection and test draws use different seeds, so the test score is not the
    one the weight was picked on.
    """
    sel = {}
    for w in weights:
        lab = balanced_labels(n_select)
        sel[str(w)] = scorer.score(draw(len(lab), lab, w, torch.Generator().manual_seed(seed * 100 + 1)), lab, "val")[
            "frechet"
        ]
    w_star = min(weights, key=lambda w: sel[str(w)])
    lab = balanced_labels(n_samples)
    imgs = draw(len(lab), lab, w_star, torch.Generator().manual_seed(seed * 100 + 2))
    out = scorer.score(imgs, lab)
    out["w_star"] = float(w_star)
    return out, sel, imgs
