"""Mixed precision: ``TrainerConfig(precision="bf16")`` autocasts ``compute_loss`` to bfloat16,
keeps fp32 weights, and lands within a stated distance of fp32 on digits (full figures:
``benchmarks/precision_digits.py``)."""

from __future__ import annotations

import math

import pytest
import torch

from isthmus.config import ConfigError
from isthmus.data import load_digits, train_val_split
from isthmus.models import AutoEncoder
from isthmus.train import Callback, Trainer, TrainerConfig

# Short digits runs (6 epochs of the benchmark's 30); the benchmark measured bf16/fp32 test-MSE
# ratios of ~1.00 at 30 epochs, so a 10 % band is loose enough for rounding and tight enough to
# catch a broken cast (a model left untrained or trained on garbage sits far outside it).
AGREEMENT = 0.10


class _Dtypes(Callback):
    def __init__(self):
        self.seen: set[torch.dtype] = set()

    def on_step_end(self, trainer):
        self.seen.add(trainer.last_output.recon.dtype)


@pytest.fixture(scope="module")
def digits():
    train, test = train_val_split(load_digits(), val_fraction=0.2, seed=0)
    return torch.as_tensor(train.X), torch.as_tensor(test.X)


def _train(digits, precision):
    xtr, xte = digits
    torch.manual_seed(0)
    model = AutoEncoder.mlp(64, latent_dim=8)
    spy = _Dtypes()
    cfg = TrainerConfig(epochs=6, batch_size=64, progress=False, device="cpu", precision=precision)
    result = Trainer(model, cfg, callbacks=[spy]).fit(xtr, val=xte)
    with torch.no_grad():
        test_mse = float(((model.reconstruct(xte) - xte) ** 2).mean())
    return model, result, spy.seen, test_mse


def test_bf16_trains_in_bfloat16_with_fp32_weights_and_agrees_with_fp32(digits):
    m32, r32, dt32, mse32 = _train(digits, "fp32")
    m16, r16, dt16, mse16 = _train(digits, "bf16")
    assert dt32 == {torch.float32} and dt16 == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in r16.history)
    assert r16.history[-1]["train_loss"] < 0.5 * r16.history[0]["train_loss"]  # it learned
    assert not torch.equal(next(m32.parameters()), next(m16.parameters()))  # the cast took effect
    assert abs(mse16 / mse32 - 1) < AGREEMENT, (mse32, mse16)


def test_precision_is_validated():
    with pytest.raises(ConfigError, match="precision"):
        TrainerConfig(precision="fp16")
