"""bf16 autocast vs fp32 on scikit-learn digits: final test MSE of the default MLP autoencoder.

The setting of ``digits_reconstruction.py`` (80/20 split seed 0, latent 8, 30 epochs, batch 64,
Adam 1e-3), trained twice per seed: ``TrainerConfig(precision="fp32")`` and ``precision="bf16"``
(``compute_loss`` under bfloat16 autocast; weights and optimizer in fp32). Test MSE is measured in
fp32 on the held-out 20 %. Run from the repo root: ``.venv/bin/python benchmarks/precision_digits.py [SEEDS]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from isthmus.data import load_digits, train_val_split
from isthmus.metrics import mse
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig


def train_once(Xtr: np.ndarray, Xte: np.ndarray, seed: int, precision: str, epochs: int = 30) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = AutoEncoder.mlp(64, latent_dim=8)
    cfg = TrainerConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=seed, progress=False, precision=precision)
    t0 = time.perf_counter()
    Trainer(model, cfg).fit(torch.as_tensor(Xtr))
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        return mse(Xte, model.reconstruct(torch.as_tensor(Xte)).numpy()), elapsed


def main(n_seeds: int = 3) -> None:
    train, test = train_val_split(load_digits(), val_fraction=0.2, seed=0)
    rows = []
    for seed in range(n_seeds):
        (m32, t32), (m16, t16) = (train_once(train.X, test.X, seed, p) for p in ("fp32", "bf16"))
        rows.append((m32, m16))
        print(f"seed {seed}: fp32 test_mse {m32:.6f} ({t32:.1f} s)  bf16 test_mse {m16:.6f} ({t16:.1f} s)  "
              f"bf16/fp32 {m16 / m32:.3f}")
    a = np.array(rows)
    print(f"mean over {n_seeds} seeds: fp32 {a[:, 0].mean():.6f}  bf16 {a[:, 1].mean():.6f}  "
          f"ratio {a[:, 1].mean() / a[:, 0].mean():.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
