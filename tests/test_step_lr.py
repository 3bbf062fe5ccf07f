"""train.callbacks.StepLR: per-epoch step decay of the learning rate (torch's StepLR, stateless)."""

import pytest
import torch

from isthmus.config import ConfigError
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import StepLR

torch.set_num_threads(1)


def _fit(epochs, callbacks, **cfg):
    torch.manual_seed(0)
    model = AutoEncoder.mlp(6, latent_dim=2, hidden=(4,))
    cfg = TrainerConfig(epochs=epochs, batch_size=8, lr=0.1, seed=0, progress=False, device="cpu", **cfg)
    return Trainer(model, cfg, callbacks=callbacks).fit(torch.randn(16, 6)).history


def test_lr_decays_by_gamma_every_step_epochs_as_torch_steplr():
    hist = _fit(7, [StepLR(step_epochs=3, gamma=0.5)])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    want = []
    for _ in range(7):
        want.append(opt.param_groups[0]["lr"])
        opt.step(), ref.step()
    assert [h["lr"] for h in hist] == pytest.approx(want)  # 0.1 ×3, 0.05 ×3, 0.025


def test_rejects_bad_arguments_and_a_competing_step_schedule():
    with pytest.raises(ConfigError, match="step_epochs"):
        StepLR(0)
    with pytest.raises(ConfigError, match="gamma"):
        StepLR(10, 1.5)
    with pytest.raises(ConfigError, match="schedule='constant'"):
        _fit(2, [StepLR(1, 0.5)], schedule="cosine")
