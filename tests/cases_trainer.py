"""Small shared pieces for the trainer tests: a quiet CPU config, a seeded tiny MLP autoencoder, fixed data."""

import torch

from isthmus.models import AutoEncoder
from isthmus.train import TrainerConfig


def quiet(**kw) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", **kw})


def mlp(latent: int = 2) -> AutoEncoder:
    torch.manual_seed(0)
    return AutoEncoder.mlp(4, latent, hidden=(4,))


DATA = torch.linspace(0, 1, 64).reshape(16, 4)
