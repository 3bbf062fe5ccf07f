"""``StackVAEGDetector``: StackVAE-G as a scikit-learn-style series anomaly detector.

Same surface as :class:`~isthmus.tasks.series.SeriesDetector` (``fit`` on healthy ``(T, C)``
series, ``score_steps``, ``predict_steps``, ``channel_contributions``, ``stream``), plus
``adjacency()`` (the learned channel graph) and ``co_deviating(series, t)`` (which channels
deviate together with the worst channel at step t, read off that graph).

Channels are standardised with the training mean/std (std floored at 1e-3 so a channel constant
in training does not divide by zero). The score of step t is the sum over channels of the squared
error of the last step of the window ending at t (only the past is used, so streaming gives the
batch scores exactly); the first ``window - 1`` steps share the first window's score.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from isthmus.data.validation import DataError
from isthmus.data.windows import sliding_windows
from isthmus.models.stackvae import StackVAEG, StackVAEGConfig
from isthmus.tasks.series import StreamScorer, _series

__all__ = ["StackVAEGDetector"]


class _WindowScorer:
    """Adapter so :class:`StreamScorer` can score flattened raw windows ``(N, window·C)``."""

    def __init__(self, det: "StackVAEGDetector") -> None:
        self.det = det

    def score_samples(self, flat: np.ndarray) -> np.ndarray:
        w = flat.reshape(len(flat), self.det.window, self.det.n_channels_)
        return self.det._channel_errors(w).sum(1)


class StackVAEGDetector(BaseEstimator):
    """Fit StackVAE-G on windows of healthy series; score steps and channels.

    Parameters mirror :class:`StackVAEGConfig` (``graph_weight`` = λ; 0 = no graph) plus training:
    ``max_steps`` optimiser steps of Adam (``lr``, ``weight_decay``, grad-norm clip 12 as in the
    paper), ``batch_size``, ``stride`` between training windows, ``lr`` times ``lr_gamma`` after every
    ``lr_step_epochs`` epochs (the authors' ``StepLR(10, 0.8)``; ``lr_gamma=1`` = constant),
    ``sample_output`` (train on a sample of the output Gaussian, as the authors' code), ``percentile``
    of the training step scores used as the ``predict_steps`` threshold.
    Learned: ``model_``, ``mean_``, ``scale_``, ``n_channels_``, ``threshold_``, ``n_params_``.
    """

    def __init__(
        self,
        window: int = 32,
        stride: int = 1,
        hidden: Sequence[int] = (64, 64),
        latent_dim: int = 8,
        k: int = 5,
        embed_dim: int = 16,
        alpha: float = 3.0,
        graph_init_scale: float = 1.0,
        graph_weight: float = 0.5,
        consistency_weight: float = 1.0,
        beta: float = 1.0,
        max_steps: int = 600,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        lr_step_epochs: int = 10,
        lr_gamma: float = 0.8,
        sample_output: bool = True,
        percentile: float = 99.0,
        random_state: int | None = None,
    ) -> None:
        self.window, self.stride, self.hidden, self.latent_dim = window, stride, hidden, latent_dim
        self.k, self.embed_dim, self.alpha, self.graph_weight = k, embed_dim, alpha, graph_weight
        self.graph_init_scale = graph_init_scale
        self.consistency_weight, self.beta, self.max_steps, self.batch_size = (
            consistency_weight,
            beta,
            max_steps,
            batch_size,
        )
        self.lr, self.weight_decay, self.percentile, self.random_state = lr, weight_decay, percentile, random_state
        self.lr_step_epochs, self.lr_gamma, self.sample_output = lr_step_epochs, lr_gamma, sample_output

    def fit(self, series: Any | Sequence[Any], y: Any = None) -> "StackVAEGDetector":
        """Fit on one healthy ``(T, C)`` series or a list of them (windows never cross series)."""
        from isthmus.train import Trainer, TrainerConfig
        from isthmus.train.callbacks import StepLR

        parts = [_series(s) for s in series] if isinstance(series, (list, tuple)) else [_series(series)]
        if len({p.shape[1] for p in parts}) != 1:
            raise DataError(f"all series must have the same channels, got {[p.shape[1] for p in parts]}")
        rows = np.concatenate(parts)
        if max(len(p) for p in parts) < self.window:
            raise DataError(
                f"series has n_samples={max(len(p) for p in parts)} time steps, fewer than "
                f"window={self.window}; pass a longer series or a smaller window"
            )
        self.n_channels_ = self.n_features_in_ = rows.shape[1]
        self.mean_ = rows.mean(0)
        self.scale_ = np.maximum(rows.std(0), 1e-3)
        wins = np.concatenate([sliding_windows(self._scale(p), self.window, self.stride) for p in parts])
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        torch.manual_seed(seed)
        self.model_ = StackVAEG(self._config())
        self.n_params_ = sum(p.numel() for p in self.model_.parameters())
        n_batches = math.ceil(len(wins) / self.batch_size)
        cfg = TrainerConfig(
            epochs=max(1, round(self.max_steps / n_batches)),
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            grad_clip=12.0,
            seed=seed,
            progress=False,
            device="cpu",
        )
        step_lr = StepLR(self.lr_step_epochs, self.lr_gamma)  # history_: per-epoch train_* means
        self.history_ = Trainer(self.model_, cfg, callbacks=[step_lr]).fit(torch.from_numpy(wins)).history
        self.model_.eval()
        train_scores = np.concatenate([self.score_steps(p) for p in parts])
        self.threshold_ = float(np.percentile(train_scores, self.percentile))
        return self

    def _config(self) -> StackVAEGConfig:
        return StackVAEGConfig(
            n_channels=self.n_channels_,
            window=self.window,
            hidden=list(self.hidden),
            latent_dim=self.latent_dim,
            embed_dim=self.embed_dim,
            k=self.k,
            alpha=self.alpha,
            graph_init_scale=self.graph_init_scale,
            graph_weight=self.graph_weight,
            consistency_weight=self.consistency_weight,
            beta=self.beta,
            sample_output=self.sample_output,
        )

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) / self.scale_).astype(np.float32)

    def _channel_errors(self, raw_windows: np.ndarray) -> np.ndarray:
        """(N, window, C) raw windows → (N, C) squared error of the last step (scaled units)."""
        z = torch.from_numpy(self._scale(raw_windows))
        return self.model_.channel_errors(z).numpy().astype(np.float64)

    def _checked(self, series: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        x = _series(series)
        if x.shape[1] != self.n_channels_:
            raise DataError(f"series has {x.shape[1]} channels, the detector was fitted on {self.n_channels_}")
        return x

    def channel_contributions(self, series: Any) -> np.ndarray:
        """(T, C) per-channel share of each step's score (they sum to :meth:`score_steps`)."""
        x = self._checked(series)
        err = self._channel_errors(sliding_windows(x, self.window))
        return np.concatenate([np.repeat(err[:1], self.window - 1, axis=0), err])

    def score_steps(self, series: Any) -> np.ndarray:
        """(T,) anomaly score of each step (higher = more anomalous)."""
        return self.channel_contributions(series).sum(1)

    def predict_steps(self, series: Any) -> np.ndarray:
        """(T,) 1 = anomaly (score above the training-score percentile), 0 = normal."""
        check_is_fitted(self, "threshold_")
        return (self.score_steps(series) > self.threshold_).astype(np.int64)

    def adjacency(self) -> np.ndarray:
        """The learned channel graph ``(C, C)``, row-stochastic (identity when ``graph_weight=0``)."""
        check_is_fitted(self, "model_")
        return self.model_.adjacency().numpy()

    def co_deviating(self, series: Any, t: int, top: int = 5) -> list[tuple[int, float]]:
        """At step ``t``: the worst channel, then its graph neighbours, each with its error, by weight."""
        contrib = self.channel_contributions(series)[t]
        worst = int(np.argmax(contrib))
        row = self.adjacency()[worst]
        order = [int(j) for j in np.argsort(-row) if row[j] > 0 and j != worst][: top - 1]
        return [(worst, float(contrib[worst]))] + [(j, float(contrib[j])) for j in order]

    def stream(self) -> StreamScorer:
        """Online scorer (memory: the last ``window`` steps); returns the batch scores exactly."""
        check_is_fitted(self, "model_")
        self.detector_ = _WindowScorer(self)
        return StreamScorer(self)
