"""Default MLP autoencoder vs PCA(8) on scikit-learn digits (the foundation issue's setting).

80/20 split (seed 0), pixels scaled to [0, 1], latent 8, 30 epochs, batch 64, Adam 1e-3.
Peer figures measured on this machine (../shared/papers/peers-general.md): pythae AE 0.0140,
PCA(8) 0.0253. Also reports the spread over 3 training seeds so one lucky seed cannot pass.
Run from the repo root: ``.venv/bin/python benchmarks/digits_reconstruction.py``.
Last line: ``test_mse <value>`` (seed 0).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.decomposition import PCA

from isthmus.data import load_digits, train_val_split
from isthmus.metrics import mse
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig


def train_once(Xtr: np.ndarray, Xte: np.ndarray, seed: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = AutoEncoder.mlp(64, latent_dim=8)  # the defaults are what is measured
    cfg = TrainerConfig(epochs=30, batch_size=64, optimizer="adam", lr=1e-3, seed=seed, progress=False)
    t0 = time.perf_counter()
    Trainer(model, cfg).fit(torch.as_tensor(Xtr))
    elapsed = time.perf_counter() - t0
    return mse(Xte, model.reconstruct(torch.as_tensor(Xte)).numpy()), elapsed


def main() -> None:
    train, test = train_val_split(load_digits(), val_fraction=0.2, seed=0)
    Xtr, Xte = train.X, test.X
    pca = PCA(8).fit(Xtr)
    pca_mse = mse(Xte, pca.inverse_transform(pca.transform(Xte)))
    results = [train_once(Xtr, Xte, seed) for seed in range(3)]
    for seed, (m, t) in enumerate(results):
        print(f"seed {seed}: test_mse {m:.5f}  ({t:.1f} s)")
    ae = np.array([m for m, _ in results])
    print(f"PCA(8) test_mse {pca_mse:.5f}")
    print(f"AutoEncoder test_mse mean {ae.mean():.5f} ± {ae.std():.5f} over 3 seeds; "
          f"ratio to PCA(8) {ae.mean() / pca_mse:.3f}; goal <= 0.0140 (pythae AE)")
    print(f"test_mse {results[0][0]:.5f}")


if __name__ == "__main__":
    main()
