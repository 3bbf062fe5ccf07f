"""``Reducer``: an autoencoder as a drop-in for PCA in a scikit-learn pipeline.

``fit`` standardises the features (the scaler is part of the estimator, so ``inverse_transform``
returns original units), trains an isthmus MLP autoencoder with the :class:`~isthmus.train.Trainer`,
and keeps it in eval mode; ``transform`` gives the latents and ``inverse_transform`` decodes them.
``n_components`` plays PCA's role. Any bottleneck name works (``"gaussian"`` gives the posterior mean).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig

__all__ = ["Reducer"]


class Reducer(TransformerMixin, BaseEstimator):
    """Autoencoder dimensionality reduction with ``fit / transform / inverse_transform``.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 6))
    >>> Reducer(n_components=2, epochs=2, random_state=0).fit_transform(X).shape
    (64, 2)
    """

    def __init__(
        self,
        n_components: int = 2,
        hidden: Sequence[int] = (128, 64),
        bottleneck: str = "identity",
        activation: str = "gelu",
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 1e-3,
        standardize: bool = True,
        random_state: int | None = None,
        progress: bool = False,
    ) -> None:
        self.n_components = n_components
        self.hidden = hidden
        self.bottleneck = bottleneck
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.standardize = standardize
        self.random_state = random_state
        self.progress = progress

    def fit(self, X: Any, y: Any = None) -> "Reducer":
        X = validate_data(self, X, dtype=np.float32, ensure_min_samples=2)
        if not (isinstance(self.n_components, (int, np.integer)) and self.n_components >= 1):
            raise ValueError(f"n_components must be an int >= 1, got {self.n_components!r}")
        self.mean_ = X.mean(0) if self.standardize else np.zeros(X.shape[1], np.float32)
        std = X.std(0) if self.standardize else np.ones(X.shape[1], np.float32)
        self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        torch.manual_seed(seed)
        self.model_ = AutoEncoder.mlp(
            in_dim=X.shape[1],
            latent_dim=self.n_components,
            hidden=list(self.hidden),
            bottleneck=self.bottleneck,
            activation=self.activation,
        )
        cfg = TrainerConfig(
            epochs=self.epochs, batch_size=min(self.batch_size, len(X)), lr=self.lr, seed=seed, progress=self.progress
        )
        Trainer(self.model_, cfg).fit(torch.as_tensor(self._scale(X)))
        self.model_.eval()
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the autoencoder computes in float32
        return tags

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        with torch.no_grad():
            return self.model_.encode(torch.as_tensor(self._scale(X))).numpy()

    def inverse_transform(self, Z: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        Z = np.asarray(Z, dtype=np.float32)
        if Z.ndim != 2:
            raise ValueError(f"Z must be 2-D (n_samples, n_components), got shape {Z.shape}")
        if Z.shape[1] != self.n_components:
            raise ValueError(f"Z has {Z.shape[1]} columns, but the Reducer has n_components={self.n_components}")
        with torch.no_grad():
            out = self.model_.decode(torch.as_tensor(Z)).numpy()
        return out * self.scale_ + self.mean_

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"reducer{i}" for i in range(self.n_components)], dtype=object)
