"""Deep clustering as one scikit-learn estimator: autoencoder → optional manifold step → k-means/GMM,
with optional DEC/IDEC refinement and, given a graph, SCGC's neighbourhood-contrastive term.

The pipeline people assemble by hand today (N2D: AE + manifold learner + k-means; DEC/IDEC/SDCN/SCGC
research code) in one ``fit``:

1. **Pretrain** an isthmus MLP autoencoder on reconstruction (the :class:`~isthmus.train.Trainer`).
2. **Cluster** its latents — optionally after a manifold step (``manifold="spectral"``: a spectral
   embedding of the latent kNN graph, N2D's finding that a local manifold before k-means helps) — by
   k-means (``n_init`` restarts) or a Gaussian mixture. ``n_clusters=None`` picks k by silhouette.
3. **Refine** (``refine="idec"`` or ``"dec"``): a Student-t cluster head initialised at the k-means
   centres, trained on ``kl_weight · KL(P‖Q)`` (+ ``recon_weight`` · MSE for IDEC), with the target
   ``P`` refreshed every epoch. Given ``adjacency`` and ``graph_weight > 0`` the loss adds SCGC's
   ``graph_weight · L_NC`` over ``Â^r`` (full batch, as the authors train). Labels are ``argmax q``.

Why no manifold step by default: on scikit-learn digits (the design data; MNIST t10k and Cora are
held out in ``benchmarks/clustering.py``) the spectral step helped (NMI 0.726 vs 0.668, seed 0), as N2D
reports, but on well-separated clusters the latent kNN graph falls apart into components and the
spectral embedding then splits one of them (NMI 0.65 on three Gaussian blobs that plain k-means
separates perfectly; ``tests/test_clustering_parts.py``). A default must not fail on the easy case.
Why refinement is optional and off by default: on features where k-means on AE latents is already
stable, DEC-style self-training can drift into degenerate clusters; the refinement is the paper-faithful
choice for SCGC/IDEC recipes, the plain pipeline the safer default.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Literal, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from isthmus.data.graphs import adjacency_power, normalize_adjacency
from isthmus.models import AutoEncoder
from isthmus.nn.cluster_head import ClusterHead, target_distribution
from isthmus.nn.contrastive import neighbour_contrastive
from isthmus.train import Trainer, TrainerConfig

__all__ = ["DeepClusterer"]


class DeepClusterer(ClusterMixin, TransformerMixin, BaseEstimator):
    """Autoencoder → (manifold) → k-means/GMM → (DEC/IDEC/SCGC refinement). See the module doc.

    >>> from sklearn.datasets import load_digits
    >>> X = load_digits().data[:300] / 16
    >>> labels = DeepClusterer(n_clusters=10, pretrain_epochs=2, random_state=0).fit_predict(X)
    >>> labels.shape
    (300,)
    """

    def __init__(
        self,
        n_clusters: int | None = None,
        latent_dim: int = 10,
        hidden: Sequence[int] = (256, 256, 512),
        activation: str = "relu",
        pretrain_epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 256,
        manifold: Literal["spectral"] | None = None,
        manifold_neighbors: int = 10,
        method: Literal["kmeans", "gmm"] = "kmeans",
        n_init: int = 20,
        k_range: tuple[int, int] = (2, 12),
        refine: Literal["idec", "dec"] | None = None,
        refine_epochs: int = 200,
        refine_lr: float = 1e-3,
        kl_weight: float = 0.1,
        recon_weight: float = 1.0,
        graph_weight: float = 0.0,
        graph_power: int = 1,
        graph_cumulative: bool = False,
        graph_tau: float = 1.0,
        autoencoder: AutoEncoder | None = None,
        random_state: int | None = None,
        progress: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.pretrain_epochs = pretrain_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.manifold = manifold
        self.manifold_neighbors = manifold_neighbors
        self.method = method
        self.n_init = n_init
        self.k_range = k_range
        self.refine = refine
        self.refine_epochs = refine_epochs
        self.refine_lr = refine_lr
        self.kl_weight = kl_weight
        self.recon_weight = recon_weight
        self.graph_weight = graph_weight
        self.graph_power = graph_power
        self.graph_cumulative = graph_cumulative
        self.graph_tau = graph_tau
        self.autoencoder = autoencoder
        self.random_state = random_state
        self.progress = progress

    # ---- checks ------------------------------------------------------------------------------
    def _check_params(self, n: int) -> None:
        if self.n_clusters is not None and not (
            isinstance(self.n_clusters, (int, np.integer)) and 1 <= self.n_clusters <= n
        ):
            raise ValueError(f"n_clusters must be an int in [1, {n}] or None, got {self.n_clusters!r}")
        if self.manifold not in (None, "spectral"):
            raise ValueError(f"manifold must be None or 'spectral', got {self.manifold!r}")
        if self.method not in ("kmeans", "gmm"):
            raise ValueError(f"method must be 'kmeans' or 'gmm', got {self.method!r}")
        if self.refine not in (None, "idec", "dec"):
            raise ValueError(f"refine must be None, 'idec' or 'dec', got {self.refine!r}")
        if self.refine and self.manifold:
            raise ValueError("refine works in the latent space; it cannot follow a manifold step (set one of them)")
        if self.latent_dim < 1 or self.pretrain_epochs < 0 or self.refine_epochs < 0:
            raise ValueError("latent_dim must be >= 1 and epoch counts >= 0")

    # ---- fit ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, adjacency: sp.spmatrix | np.ndarray | None = None) -> "DeepClusterer":
        """Fit on ``X`` (n_samples, n_features); ``adjacency`` (n, n) enables the graph term."""
        X = validate_data(self, X, dtype=np.float32, ensure_min_samples=2)
        self._check_params(len(X))
        if self.graph_weight > 0 and adjacency is None:
            raise ValueError("graph_weight > 0 needs fit(X, adjacency=...)")
        if adjacency is not None and sp.csr_matrix(adjacency).shape != (len(X), len(X)):
            raise ValueError(f"adjacency must be ({len(X)}, {len(X)}), got {sp.csr_matrix(adjacency).shape}")
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(0, 2**31 - 1))
        torch.manual_seed(seed)
        if self.autoencoder is not None:  # a (pretrained) model of the caller's: copied, never changed in place
            self.autoencoder_ = copy.deepcopy(self.autoencoder)
            if self.autoencoder_.latent_dim != self.latent_dim:
                raise ValueError(
                    f"autoencoder has latent_dim {self.autoencoder_.latent_dim}, but latent_dim={self.latent_dim}"
                )
        else:
            self.autoencoder_ = AutoEncoder.mlp(
                in_dim=X.shape[1], latent_dim=self.latent_dim, hidden=list(self.hidden), activation=self.activation
            )
        xt = torch.as_tensor(X)
        if self.pretrain_epochs:
            cfg = TrainerConfig(
                epochs=self.pretrain_epochs, batch_size=self.batch_size, lr=self.lr, seed=seed, progress=self.progress
            )
            Trainer(self.autoencoder_, cfg).fit(xt)
        self.autoencoder_.eval()
        with torch.no_grad():
            z = self.autoencoder_.encode(xt).numpy()
        space = self._manifold(z, seed)
        k = self.n_clusters if self.n_clusters is not None else self._choose_k(space, seed)
        self.n_clusters_ = int(k)
        labels, centers = self._cluster(space, k, seed)
        self.labels_pretrained_ = labels
        if self.refine:
            labels = self._refine(xt, centers, adjacency, seed)
        self.labels_ = labels
        if self.manifold:  # a spectral embedding has no out-of-sample map: new rows vote by latent neighbours
            from sklearn.neighbors import KNeighborsClassifier

            self._vote_ = KNeighborsClassifier(n_neighbors=min(self.manifold_neighbors, len(z))).fit(z, labels)
        return self

    def _manifold(self, z: np.ndarray, seed: int) -> np.ndarray:
        if self.manifold is None:
            return z
        from sklearn.manifold import SpectralEmbedding

        dim = self.n_clusters or min(10, z.shape[1])
        return SpectralEmbedding(
            n_components=dim, n_neighbors=min(self.manifold_neighbors, len(z) - 1), random_state=seed
        ).fit_transform(z)

    def _choose_k(self, space: np.ndarray, seed: int) -> int:
        lo, hi = self.k_range
        hi = min(hi, len(space) - 1)
        if lo < 2 or hi < lo:
            raise ValueError(f"k_range must satisfy 2 <= low <= high < n_samples, got {self.k_range}")
        scores = {
            k: silhouette_score(space, self._cluster(space, k, seed)[0], random_state=seed) for k in range(lo, hi + 1)
        }
        self.k_scores_ = scores
        return max(scores, key=lambda k: scores[k])

    def _cluster(self, space: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "gmm":
            gm = GaussianMixture(k, n_init=max(1, self.n_init // 5), random_state=seed).fit(space)
            self.clusterer_ = gm
            return gm.predict(space), gm.means_
        km = KMeans(k, n_init=self.n_init, random_state=seed).fit(space)
        self.clusterer_ = km
        return km.labels_, km.cluster_centers_

    def _refine(self, xt: torch.Tensor, centers: np.ndarray, adjacency: Any, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        ae = self.autoencoder_
        head = ClusterHead(self.n_clusters_, self.latent_dim)
        head.init_centers(torch.as_tensor(centers, dtype=torch.float32))
        self.head_ = head
        a_r = None
        if adjacency is not None and self.graph_weight > 0:
            a_hat = normalize_adjacency(adjacency, self_loops=True, kind="row")
            a_r = torch.as_tensor(adjacency_power(a_hat, self.graph_power, self.graph_cumulative), dtype=torch.float32)
        params = list(ae.parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=self.refine_lr)
        recon_w = self.recon_weight if self.refine == "idec" else 0.0
        self.refine_curve_: list[float] = []
        self.label_change_: list[float] = []
        self.label_history_: list[np.ndarray] = []  # argmax q before each update (the authors log these)
        self.epoch_seconds_: list[float] = []
        prev = None
        for _ in range(self.refine_epochs):
            t0 = time.perf_counter()
            ae.train()
            z = ae.encoder(xt)
            z = ae.bottleneck(z).latent
            q = head(z)
            p = target_distribution(q)  # refreshed every epoch (full batch), as SDCN/SCGC do
            loss = self.kl_weight * F.kl_div(q.log(), p, reduction="batchmean")
            if recon_w:
                loss = loss + recon_w * F.mse_loss(ae.decoder(z), xt)
            if a_r is not None:
                loss = loss + self.graph_weight * neighbour_contrastive(z, a_r, self.graph_tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.epoch_seconds_.append(time.perf_counter() - t0)
            labels = q.argmax(1).detach().numpy()
            self.label_history_.append(labels)
            self.refine_curve_.append(loss.item())
            self.label_change_.append(float((labels != prev).mean()) if prev is not None else 1.0)
            prev = labels
        ae.eval()
        with torch.no_grad():
            return head(ae.encode(xt)).argmax(1).numpy()

    # ---- use ---------------------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the autoencoder computes in float32
        return tags

    def transform(self, X: Any) -> np.ndarray:
        """The autoencoder latents of ``X`` (n_samples, latent_dim)."""
        check_is_fitted(self, "autoencoder_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        with torch.no_grad():
            return self.autoencoder_.encode(torch.as_tensor(X)).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Cluster labels of new rows (argmax q after refinement; else the fitted clusterer)."""
        z = self.transform(X)
        if self.refine:
            with torch.no_grad():
                return self.head_(torch.as_tensor(z)).argmax(1).numpy()
        if self.manifold:
            return self._vote_.predict(z)
        return self.clusterer_.predict(z)

    def fit_predict(self, X: Any, y: Any = None, adjacency: Any = None) -> np.ndarray:
        return self.fit(X, adjacency=adjacency).labels_
