"""Cluster samples in a learned low-dimensional code space: scaler → reducer → k-means.

:class:`AEKMeans` is the remote-sensing mapping pipeline of Nagar et al. 2024 (arXiv 2404.02180,
seed paper 3) as a scikit-learn estimator: per-sample features (pixels, patches, rows) are
min-max scaled, then standardised, reduced to ``latent_dim`` codes and clustered by k-means.
The reducer is a choice, so the paper's method and its baselines run through *one* pipeline
with identical scaling, k-means settings and seeds:

* ``"stacked"`` — a deep nonlinear MLP autoencoder (the paper's "stacked AE"; encoder widths
  step down from the input to the code, decoder mirrored, SELU by default),
* ``"linear"``  — the same architecture with no activations (the paper's "canonical" deep linear AE),
* ``"pca"``     — PCA to ``latent_dim`` components (or to ``pca_variance`` explained variance),
* ``"cascade"`` — the authors' cascade of three small SELU AEs (:class:`isthmus.tasks.cascade_ae.CascadeAE`,
  2-d code; the 2024 notebooks behind the paper),
* ``"canonical"`` — the cascade's first stage alone (the paper's "canonical" AE, 2-d code),
* ``"none"``    — k-means on the scaled features themselves.

:func:`majority_filter` is the map post-processing step (a mode filter over a window).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import torch
from scipy import ndimage
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

if TYPE_CHECKING:
    from isthmus.models import AutoEncoder

__all__ = ["AEKMeans", "REDUCERS", "ramp_widths", "majority_filter"]

REDUCERS = ("stacked", "linear", "pca", "cascade", "canonical", "none")


def ramp_widths(in_dim: int, latent_dim: int, n_hidden: int = 5) -> list[int]:
    """Encoder widths stepping evenly from ``in_dim`` down to ``latent_dim``.

    For 10 bands and 5 codes this is the paper's ``[9, 8, 7, 6, 5]`` (10→9→8→7→6→5→5).
    """
    if in_dim < 1 or latent_dim < 1 or n_hidden < 0:
        raise ValueError(f"need in_dim, latent_dim >= 1 and n_hidden >= 0, got {in_dim}, {latent_dim}, {n_hidden}")
    return [max(latent_dim, int(round(in_dim - (in_dim - latent_dim) * i / n_hidden))) for i in range(1, n_hidden + 1)]


class AEKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """Scale → reduce (stacked AE / deep linear AE / PCA / none) → k-means.

    Parameters
    ----------
    n_clusters: number of k-means clusters.
    latent_dim: size of the codes k-means sees (ignored for ``reducer="none"``).
    reducer: one of :data:`REDUCERS`.
    hidden: encoder widths; ``None`` gives :func:`ramp_widths` (``n_hidden`` layers).
    activation: hidden activation of the ``"stacked"`` autoencoder.
    epochs, batch_size, lr, optimizer: autoencoder training (isthmus Trainer, MSE loss).
    max_train_samples: train the autoencoder (and PCA, k-means) on at most this many rows drawn
        at random; all rows are still encoded and labelled. ``None`` uses every row.
    scale: min-max scaling (then standard scaling when ``standardise``), fitted on the training rows.
    standardise: standardise after min-max (False = min-max only, as in the authors' 2024 code).
    pca_variance: with ``reducer="pca"``, keep the fewest components reaching this explained variance
        (the authors: 0.9) instead of ``latent_dim``.
    cascade_epochs, cascade_batch_sizes, l1_activity: per-stage training of ``"cascade"`` / ``"canonical"``.
    n_init: k-means restarts.
    random_state: seed for the subsample, network init, batch order and k-means.

    Learned attributes: ``scaler_``, ``model_`` (AE reducers) or ``pca_``, ``kmeans_``,
    ``labels_`` (cluster of every row passed to ``fit``), ``history_`` (per-epoch losses),
    ``n_features_in_``.
    """

    def __init__(
        self,
        n_clusters: int = 5,
        latent_dim: int = 5,
        reducer: str = "stacked",
        hidden: Sequence[int] | None = None,
        n_hidden: int = 5,
        activation: str = "selu",
        epochs: int = 15,
        batch_size: int = 64,
        lr: float = 1e-3,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        max_train_samples: int | None = None,
        scale: bool = True,
        n_init: int = 10,
        random_state: int | np.random.RandomState | None = None,
        standardise: bool = True,
        pca_variance: float | None = None,
        cascade_epochs: tuple[int, ...] = (10, 5, 5),
        cascade_batch_sizes: tuple[int, ...] = (64, 32, 16),
        l1_activity: float = 1e-4,
    ) -> None:
        self.n_clusters = n_clusters
        self.latent_dim = latent_dim
        self.reducer = reducer
        self.hidden = hidden
        self.n_hidden = n_hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.max_train_samples = max_train_samples
        self.scale = scale
        self.n_init = n_init
        self.random_state = random_state
        self.standardise = standardise
        self.pca_variance = pca_variance
        self.cascade_epochs = cascade_epochs
        self.cascade_batch_sizes = cascade_batch_sizes
        self.l1_activity = l1_activity

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "AEKMeans":
        """Fit scaler, reducer and k-means on ``X`` (N, D); ``y`` is ignored."""
        self._check_params()
        X = check_array(X, dtype=np.float32)
        if len(X) < max(2, self.n_clusters):
            raise ValueError(f"n_samples={len(X)} should be >= max(2, n_clusters={self.n_clusters})")
        self.n_features_in_ = X.shape[1]
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(0, 2**31 - 1))
        rows = self._train_rows(len(X), rs)
        Xt = X[rows]
        steps = [MinMaxScaler(), StandardScaler()] if self.standardise else [MinMaxScaler()]
        self.scaler_ = make_pipeline(*steps).fit(Xt) if self.scale else None
        Zt = self._scale(Xt)
        self.model_: AutoEncoder | None = None
        self.pca_, self.cascade_, self.history_ = None, None, []
        if self.reducer in ("stacked", "linear"):
            self._fit_autoencoder(Zt, seed)
        elif self.reducer in ("cascade", "canonical"):
            from isthmus.tasks.cascade_ae import CascadeAE

            self.cascade_ = CascadeAE(
                n_stages=3 if self.reducer == "cascade" else 1,
                epochs=tuple(self.cascade_epochs),
                batch_sizes=tuple(self.cascade_batch_sizes),
                l1=self.l1_activity,
                seed=seed,
            ).fit(Zt)
            self.history_ = [list(c) for c in self.cascade_.curves]  # one loss curve per stage
        elif self.reducer == "pca":
            n = self.pca_variance if self.pca_variance is not None else min(self.latent_dim, Zt.shape[1])
            self.pca_ = PCA(n_components=n, svd_solver="full", random_state=seed).fit(Zt)
        self.kmeans_ = KMeans(self.n_clusters, n_init=self.n_init, random_state=seed).fit(self._reduce(Zt))
        self.labels_ = self.kmeans_.labels_ if len(rows) == len(X) else self.predict(X)
        return self

    def _check_params(self) -> None:
        if self.reducer not in REDUCERS:
            raise ValueError(f"reducer must be one of {REDUCERS}, got {self.reducer!r}")
        if self.n_clusters < 1 or self.latent_dim < 1:
            raise ValueError(f"n_clusters and latent_dim must be >= 1, got {self.n_clusters}, {self.latent_dim}")
        if self.max_train_samples is not None and self.max_train_samples < self.n_clusters:
            raise ValueError(f"max_train_samples must be >= n_clusters, got {self.max_train_samples}")
        if self.pca_variance is not None and not 0 < self.pca_variance < 1:
            raise ValueError(f"pca_variance must be in (0, 1), got {self.pca_variance}")

    def _train_rows(self, n: int, rs: np.random.RandomState) -> np.ndarray:
        if self.max_train_samples is None or self.max_train_samples >= n:
            return np.arange(n)
        return np.sort(rs.choice(n, self.max_train_samples, replace=False))

    def _fit_autoencoder(self, Z: np.ndarray, seed: int) -> None:
        from isthmus.models import AutoEncoder, ObjectiveConfig
        from isthmus.train import Trainer, TrainerConfig

        d = Z.shape[1]
        hidden = list(self.hidden) if self.hidden is not None else ramp_widths(d, self.latent_dim, self.n_hidden)
        act = self.activation if self.reducer == "stacked" else "identity"
        torch.manual_seed(seed)  # network init is part of the estimator's randomness
        self.model_ = AutoEncoder.mlp(
            in_dim=d,
            latent_dim=self.latent_dim,
            hidden=hidden,
            activation=act,
            objective=ObjectiveConfig(recon_loss="mse", recon_reduction="mean"),
        )
        cfg = TrainerConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            seed=seed,
            progress=False,
        )
        result = Trainer(self.model_, cfg).fit(torch.from_numpy(np.ascontiguousarray(Z)))
        self.history_ = list(getattr(result, "history", []) or [])
        self.model_.eval()

    # ---- inference -------------------------------------------------------------------------
    def _scale(self, X: np.ndarray) -> np.ndarray:
        return X if self.scaler_ is None else self.scaler_.transform(X).astype(np.float32)

    def _reduce(self, Z: np.ndarray) -> np.ndarray:
        if (cascade := getattr(self, "cascade_", None)) is not None:
            return cascade.encode(Z).astype(np.float32)
        if self.model_ is not None:
            with torch.no_grad():
                xs = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
                return torch.cat([self.model_.encode(xs[i : i + 65536]) for i in range(0, len(xs), 65536)]).numpy()
        if self.pca_ is not None:
            return self.pca_.transform(Z).astype(np.float32)
        return Z

    def transform(self, X: Any) -> np.ndarray:
        """Codes ``(N, latent_dim)`` (the scaled features for ``reducer="none"``)."""
        check_is_fitted(self, "kmeans_")
        X = check_array(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but AEKMeans is expecting {self.n_features_in_} features as input"
            )
        return self._reduce(self._scale(X))

    def predict(self, X: Any) -> np.ndarray:
        """Cluster index of each row."""
        codes = self.transform(X)
        return self.kmeans_.predict(codes).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        return np.asarray(self.fit(X).labels_, dtype=np.int64)

    def fit_transform(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        return self.fit(X).transform(X)

    def reconstruction_fvu(self, X: Any) -> float:
        """Fraction of the scaled features' variance the codes fail to reconstruct (0 = perfect).

        A convergence diagnostic: a deep *linear* AE can at best match PCA's value, so a linear
        AE far above PCA is undertrained. ``reducer="none"`` gives 0; ``"cascade"`` / ``"canonical"``
        give stage 1's value (later stages reconstruct their own, wider inputs).
        """
        check_is_fitted(self, "kmeans_")
        Z = self._scale(check_array(X, dtype=np.float32))
        if (cascade := getattr(self, "cascade_", None)) is not None:
            return cascade.stage1_fvu(Z)
        if self.model_ is not None:
            with torch.no_grad():
                recon = self.model_.reconstruct(torch.from_numpy(np.ascontiguousarray(Z))).numpy()
        elif self.pca_ is not None:
            recon = self.pca_.inverse_transform(self.pca_.transform(Z))
        else:
            return 0.0
        total = float(((Z - Z.mean(0)) ** 2).sum())
        return float(((recon - Z) ** 2).sum()) / max(total, 1e-12)

    def score(self, X: Any, y: Any = None) -> float:
        """Negative k-means inertia on ``X``'s codes (higher is better, as sklearn expects)."""
        codes = self.transform(X)
        return float(self.kmeans_.score(codes))


def majority_filter(labels: np.ndarray, size: int = 3, mask: np.ndarray | None = None) -> np.ndarray:
    """Mode filter of a 2-D label map over ``size × size`` windows (map post-processing).

    Pixels outside ``mask`` (e.g. a nodata collar) neither vote nor change; ties keep the
    pixel's own label. Labels must be non-negative integers inside the mask.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"majority_filter needs a 2-D label map, got shape {labels.shape}")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    valid = np.ones(labels.shape, bool) if mask is None else np.asarray(mask, bool)
    if (labels[valid] < 0).any():
        raise ValueError("majority_filter needs non-negative labels inside the mask")
    k = int(labels[valid].max()) + 1 if valid.any() else 0
    best, best_votes = labels.copy(), np.full(labels.shape, -1.0)
    for c in range(k):
        votes = ndimage.uniform_filter(((labels == c) & valid).astype(np.float64), size=size, mode="constant")
        votes += (labels == c) * (0.5 / size**2)  # the centre breaks ties in favour of itself
        better = votes > best_votes
        best[better], best_votes[better] = c, votes[better]
    return np.where(valid, best, labels)
