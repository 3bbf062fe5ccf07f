"""Regression guards on learning quality (not speed): the defaults must keep working."""

from __future__ import annotations

import torch
from sklearn.decomposition import PCA

from isthmus.data import load_digits, train_val_split
from isthmus.metrics import mse
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig


def test_default_autoencoder_beats_pca_on_digits():
    """The full benchmark (30 epochs) reaches ~0.012 vs PCA(8) ~0.024; 8 epochs must already beat PCA."""
    train, test = train_val_split(load_digits(), val_fraction=0.2, seed=0)
    pca = PCA(8).fit(train.X)
    pca_mse = mse(test.X, pca.inverse_transform(pca.transform(test.X)))
    torch.manual_seed(0)
    model = AutoEncoder.mlp(64, latent_dim=8)
    Trainer(model, TrainerConfig(epochs=8, progress=False)).fit(torch.as_tensor(train.X))
    ae_mse = mse(test.X, model.reconstruct(torch.as_tensor(test.X)).numpy())
    assert ae_mse < pca_mse, (ae_mse, pca_mse)
