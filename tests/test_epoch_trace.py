"""EpochTrace: one value per epoch, computed in eval mode without gradients, training mode restored."""

import torch
from torch import nn

from isthmus.models import Classifier
from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import EpochTrace


def test_one_value_per_epoch_in_eval_mode_without_grad():
    torch.manual_seed(0)
    model = Classifier(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)))
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    seen = []

    def probe(m):
        seen.append((m.training, torch.is_grad_enabled()))
        return float(m.compute_loss((x, y)).loss)

    trace = EpochTrace(probe)
    Trainer(model, TrainerConfig(epochs=3, batch_size=16, progress=False), callbacks=[trace]).fit((x, y))
    assert len(trace.values) == 3 and seen == [(False, False)] * 3
    assert model.training  # the trainer's mode is handed back
    model.eval()
    with torch.no_grad():
        assert trace.values[-1] == float(model.compute_loss((x, y)).loss)  # eval-mode loss after the last epoch
