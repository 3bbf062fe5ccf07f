"""Trainer behaviour: config, data kinds, losses, schedules, gradient noise, early stopping, logs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from isthmus.config import ConfigError
from isthmus.models import AutoEncoder, Classifier, ModelOutput
from isthmus.nn import MLP, MLPConfig
from isthmus.train import (Callback, GradientNoise, NonFiniteLossError, Trainer, TrainerConfig, annealed_noise_std,
                           lr_factor)

torch.set_num_threads(1)


def quiet(**kw) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", **kw})


class Scalar(nn.Module):
    """One weight ``w``; train loss ``(w - 10)^2``, eval loss ``(w - 2)^2`` (so val gets worse past w=2)."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.calls, self.nan_at = 0, nan_at

    def compute_loss(self, batch) -> ModelOutput:
        target = 10.0 if self.training else 2.0
        recon = (self.w - target) ** 2
        kl = torch.zeros(()) * self.w
        if self.training:
            if self.calls == self.nan_at:
                kl = kl + float("nan")
            self.calls += 1
        return ModelOutput(loss=recon + kl, losses={"recon": recon, "kl": kl})


# ---- config -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, needle", [
    ({"optimizer": "rmsprop"}, "optimizer"), ({"lr": 0.0}, "lr"), ({"momentum": 0.9}, "momentum"),
    ({"checkpoint_every_steps": 5}, "checkpoint_dir"), ({"grad_clip": -1.0}, "grad_clip"),
    ({"schedule": "step"}, "schedule"), ({"batch_size": 0}, "batch_size"), ({"device": "gpu?"}, "device"),
])
def test_config_rejects_bad_fields_by_name(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainerConfig(**kw)


def test_config_json_round_trip():
    cfg = TrainerConfig(optimizer="sgd", momentum=0.9, grad_clip=1.0, betas=(0.8, 0.99), early_stopping_patience=3)
    assert TrainerConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_early_stopping_needs_validation_data():
    with pytest.raises(ConfigError, match="val"):
        Trainer(Scalar(), quiet(epochs=2, early_stopping_patience=1)).fit(torch.zeros(4, 1))


# ---- training works -----------------------------------------------------------------------------------
def test_training_lowers_autoencoder_loss():
    torch.manual_seed(0)
    x = torch.rand(256, 16)
    model = AutoEncoder.mlp(16, 4, hidden=(32,))
    trainer = Trainer(model, quiet(epochs=6, batch_size=32, lr=3e-3))
    before = trainer.evaluate(x)["loss"]
    result = trainer.fit(x, val=x[:64])
    assert result.history[-1]["train_loss"] < 0.6 * result.history[0]["train_loss"]
    assert trainer.evaluate(x)["loss"] < 0.6 * before
    assert result.steps == 6 * 8 and len(result.history) == 6 and result.best_epoch is not None


def test_classifier_on_xy_tuples():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=gen)
    x = torch.randn(200, 2, generator=gen) + 3.0 * (2 * y[:, None] - 1).float()
    model = Classifier(MLP(MLPConfig(in_dim=2, out_dim=2, hidden=[8])))
    result = Trainer(model, quiet(epochs=5, batch_size=20, lr=1e-2)).fit((x, y), val=(x, y))
    assert set(result.history[-1]) >= {"train_loss", "train_ce", "val_loss", "val_ce"}
    assert (model.predict(x) == y).float().mean() > 0.95


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


class _Table:
    def __init__(self, X, y=None):
        self.X, self.y = X, y


@pytest.mark.parametrize("kind", ["numpy", "table", "table_xy", "dataset", "list"])
def test_accepts_every_data_kind(kind):
    x = np.random.default_rng(0).random((40, 8))  # float64 → trained as float32
    data = {"numpy": x, "table": _Table(x), "table_xy": _Table(x, np.zeros(40, dtype=np.int64)),
            "dataset": _Rows(torch.tensor(x, dtype=torch.float32)), "list": [x]}[kind]
    model = AutoEncoder.mlp(8, 2, hidden=(8,))
    result = Trainer(model, quiet(epochs=1, batch_size=16)).fit(data, val=data)
    assert result.steps == 3 and math.isfinite(result.history[0]["val_loss"])


def test_rejects_unknown_data():
    with pytest.raises(TypeError, match="cannot train on"):
        Trainer(Scalar(), quiet(epochs=1)).fit({"x": 1})


# ---- NaN ----------------------------------------------------------------------------------------------
def test_nonfinite_loss_names_step_epoch_and_terms():
    model = Scalar(nan_at=3)
    trainer = Trainer(model, quiet(epochs=3, batch_size=4, optimizer="sgd", lr=0.01))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(torch.zeros(8, 1))  # 2 steps per epoch: step 3 is in epoch 1
    msg = str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert "loss became nan at step 3 (epoch 1)" in msg
    assert "recon=" in msg and "kl=nan" in msg and "learning rate" in msg
    assert info.value.step == 3 and info.value.epoch == 1 and math.isnan(info.value.terms["kl"])
    assert trainer.global_step == 3  # the bad step was not applied


# ---- early stopping ---------------------------------------------------------------------------------
class _RecordW(Callback):
    def __init__(self):
        self.ws = []

    def on_epoch_end(self, trainer, logs):
        self.ws.append(float(trainer.model.w.detach()))


def test_early_stopping_stops_and_restores_best():
    model, rec = Scalar(), _RecordW()
    cfg = quiet(epochs=20, batch_size=1, optimizer="sgd", lr=0.05, early_stopping_patience=2, restore_best=True)
    result = Trainer(model, cfg, callbacks=[rec]).fit(torch.zeros(1, 1), val=torch.zeros(1, 1))
    # w_e = 10 (1 - 0.9^(e+1)): 1.0, 1.9, 2.71, 3.44 → val (w-2)^2 is best at epoch 1, worse twice after.
    assert result.stopped_early and len(result.history) == 4 and result.best_epoch == 1
    assert result.best_val_loss == pytest.approx(0.01, rel=1e-4)
    assert float(model.w.detach()) == rec.ws[1] != rec.ws[-1]


def test_without_restore_best_keeps_last_weights():
    model, rec = Scalar(), _RecordW()
    cfg = quiet(epochs=20, batch_size=1, optimizer="sgd", lr=0.05, early_stopping_patience=2)
    Trainer(model, cfg, callbacks=[rec]).fit(torch.zeros(1, 1), val=torch.zeros(1, 1))
    assert float(model.w.detach()) == rec.ws[-1]


# ---- schedules ----------------------------------------------------------------------------------------
def test_lr_schedule_values():
    assert [lr_factor(s, 100, "cosine", 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(52, 100, "cosine", 4) == pytest.approx(0.5)
    assert lr_factor(52, 100, "linear", 4) == pytest.approx(0.5)
    assert lr_factor(99, 100, "linear", 0) == pytest.approx(0.01)
    assert lr_factor(10**6, 100, "constant", 4) == 1.0


class _RecordLR(Callback):
    def __init__(self):
        self.lrs = []

    def on_step_end(self, trainer):
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


def test_trainer_applies_warmup_then_cosine():
    rec = _RecordLR()
    cfg = quiet(epochs=2, batch_size=1, lr=0.1, schedule="cosine", warmup_steps=3)
    Trainer(Scalar(), cfg, callbacks=[rec]).fit(torch.zeros(5, 1))
    expected = [0.1 * lr_factor(s, 10, "cosine", 3) for s in range(10)]
    assert rec.lrs == pytest.approx(expected) and rec.lrs[:3] == pytest.approx([1 / 30, 2 / 30, 0.1])


# ---- gradient noise -----------------------------------------------------------------------------------
def test_annealed_noise_std_formula():
    assert annealed_noise_std(0, 0.3) == pytest.approx(math.sqrt(0.3))
    assert annealed_noise_std(99, 1.0, 0.55) == pytest.approx(100 ** -0.275)
    assert annealed_noise_std(7, 0.0) == 0.0


@pytest.mark.parametrize("step", [0, 10, 1000])
def test_gradient_noise_statistics(step):
    p = nn.Parameter(torch.zeros(40_000))
    p.grad = torch.zeros_like(p)
    GradientNoise(eta=0.3, gamma=0.55, seed=step).apply([p], step)
    expected = annealed_noise_std(step, 0.3, 0.55)
    assert p.grad.std().item() == pytest.approx(expected, rel=0.03)
    assert abs(p.grad.mean().item()) < 4 * expected / 200


def test_gradient_noise_zero_when_eta_zero():
    p = nn.Parameter(torch.zeros(100))
    p.grad = torch.ones_like(p)
    GradientNoise(eta=0.0).apply([p], 0)
    assert torch.equal(p.grad, torch.ones(100))


class _ZeroGrad(nn.Module):
    """A loss with zero gradient: under SGD(lr=1) every weight change is exactly minus the noise."""

    def __init__(self, n: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n))

    def compute_loss(self, batch):
        loss = (self.w * 0.0).sum()
        return ModelOutput(loss=loss, losses={"zero": loss})


class _RecordDelta(Callback):
    def __init__(self):
        self.prev, self.stds = None, []

    def on_step_end(self, trainer):
        w = trainer.model.w.detach().clone()
        self.stds.append((w - (self.prev if self.prev is not None else torch.zeros_like(w))).std().item())
        self.prev = w


def test_trainer_adds_annealed_noise_each_step():
    rec = _RecordDelta()
    cfg = quiet(epochs=1, batch_size=1, optimizer="sgd", lr=1.0, grad_noise_eta=0.5, grad_noise_gamma=0.55)
    Trainer(_ZeroGrad(20_000), cfg, callbacks=[rec]).fit(torch.zeros(6, 1))
    assert rec.stds == pytest.approx([annealed_noise_std(t, 0.5) for t in range(6)], rel=0.04)
    rec0 = _RecordDelta()
    Trainer(_ZeroGrad(100), quiet(epochs=1, batch_size=1, optimizer="sgd", lr=1.0), callbacks=[rec0]).fit(
        torch.zeros(3, 1))
    assert rec0.stds == [0.0, 0.0, 0.0]


# ---- progress and logs --------------------------------------------------------------------------------
def test_progress_off_prints_nothing(capfd):
    Trainer(AutoEncoder.mlp(8, 2, hidden=(8,)), quiet(epochs=2, batch_size=16)).fit(torch.rand(32, 8))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_on_draws_a_bar(capfd):
    cfg = TrainerConfig(epochs=1, batch_size=16, device="cpu")
    Trainer(AutoEncoder.mlp(8, 2, hidden=(8,)), cfg).fit(torch.rand(32, 8))
    assert "2/2" in capfd.readouterr().err


def test_jsonl_log_names_every_term(tmp_path):
    log = tmp_path / "metrics.jsonl"
    model = AutoEncoder.mlp(8, 2, hidden=(8,), bottleneck="gaussian")
    cfg = quiet(epochs=2, batch_size=8, log_path=str(log), log_every_steps=2, grad_clip=10.0)
    Trainer(model, cfg).fit(torch.rand(32, 8), val=torch.rand(16, 8))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in records if r["event"] == "step"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8] and len(epochs) == 2
    for r in steps:
        assert {"epoch", "loss", "recon", "kl", "lr", "grad_norm", "time_s"} <= set(r)
        assert r["loss"] == pytest.approx(r["recon"] + r["kl"], rel=1e-5) and r["grad_norm"] > 0
    for r in epochs:
        assert {"train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "lr"} <= set(r)


def test_no_decay_exempts_named_parameters_from_weight_decay():
    """With no_decay=["bias", "bottleneck."] AdamW shrinks only the weight matrices: at lr·wd large and zero
    gradient (a frozen loss), biases and codebook values stay put while weights decay."""
    import torch

    from isthmus.models import AutoEncoder
    from isthmus.train import Trainer, TrainerConfig

    torch.manual_seed(0)
    m = AutoEncoder.mlp(16, latent_dim=2, hidden=(8,), bottleneck="scalar_codebooks", n_values=5)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    cfg = TrainerConfig(epochs=1, batch_size=8, optimizer="adamw", lr=1e-9, weight_decay=1e7,
                        no_decay=["bias", "bottleneck."], progress=False, device="cpu")
    trainer = Trainer(m, cfg)
    trainer.fit(torch.rand(8, 16))
    groups = trainer.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [1e7, 0.0]
    for n, p in m.named_parameters():
        moved = (p.detach() - before[n]).abs().max().item()
        if "bias" in n or n.startswith("bottleneck."):
            assert moved < 1e-6, n
        else:  # decoupled decay: w ← w·(1 − lr·wd) = 0.99·w
            assert torch.allclose(p.detach(), before[n] * (1 - 1e-2), atol=1e-5), n
