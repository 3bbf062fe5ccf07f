"""The Trainer's loop pinned to exact behaviour, written against the survivors of `make mutate
MODULES=trainer` (docs/mutation.md): set_step, shuffling, drop_last, parameters without gradients,
bf16 autocast, the output check, flush and gradient-norm cadence, an in-process crash/resume replay,
optimizer settings, early-stopping wiring, thread settings, counts and the epoch log.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import IterableDataset

from isthmus.config import ConfigError
from isthmus.models import ModelOutput
from isthmus.train import Callback, Trainer, TrainerConfig

torch.set_num_threads(1)


from cases_trainer import DATA, mlp, quiet  # noqa: E402


# ---- the loop ------------------------------------------------------------------------------------------


class _Steps(nn.Module):
    """A linear model that records set_step calls, batch rows, autocast state; ``b`` is used only at step 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(1, 1)
        self.b = nn.Parameter(torch.ones(()))
        self.steps, self.rows, self.autocast, self.calls = [], [], [], 0

    def set_step(self, step):
        self.steps.append(step)

    def compute_loss(self, batch) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self.rows.append(x[:, 0].tolist())
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        loss = self.lin(x).pow(2).mean()
        if self.calls == 0:
            loss = loss + self.b ** 2
        self.calls += 1
        return ModelOutput(loss=loss, losses={"recon": loss.detach()})


def test_loop_calls_set_step_shuffles_drops_last_and_skips_unused_parameters():
    model = _Steps()
    data = torch.arange(18.0).unsqueeze(1)
    trainer = Trainer(model, quiet(epochs=1, batch_size=4, drop_last=True))  # shuffle is the default
    trainer.fit(data)
    assert model.steps == [0, 1, 2, 3] and len(model.rows) == 4  # 18 rows: 4 full batches, the rest dropped
    rows = sum(model.rows, [])
    assert len(set(rows)) == 16 and rows != sorted(rows)  # 16 distinct rows, shuffled
    # b got a gradient only at step 0: with grads set to None afterwards, Adam leaves it alone, so after
    # 4 steps it equals b after a 1-step run (zeroed grads would let Adam's momentum keep moving it)
    one_step = _Steps()
    Trainer(one_step, quiet(epochs=1, batch_size=4)).fit(data[:4])
    assert model.b.item() == one_step.b.item() != 1.0
    assert trainer.last_grad_norm is None  # no clipping, no log: no gradient-norm sync


def test_bf16_precision_runs_compute_loss_under_autocast():
    model = _Steps()
    Trainer(model, quiet(epochs=1, batch_size=4, precision="bf16")).fit(torch.ones(8, 1))
    assert model.autocast == [True, True]


def test_a_bad_model_output_is_named_on_the_first_step():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def compute_loss(self, batch):
            return SimpleNamespace(loss=self.w.expand(2), losses={})  # a vector, not a scalar loss

    msg = ("Bad.compute_loss must return a ModelOutput with a scalar tensor .loss and a dict .losses; "
           "got SimpleNamespace with loss=")
    with pytest.raises(TypeError, match="^" + re.escape(msg)):
        Trainer(Bad(), quiet(epochs=1, batch_size=4)).fit(torch.ones(8, 1))


def test_a_dict_from_compute_loss_gets_the_same_message_not_an_attribute_error():
    class DictLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def compute_loss(self, batch):
            return {"loss": self.w * 1.0}  # a common mistake: a dict instead of a ModelOutput

    with pytest.raises(TypeError, match="^DictLoss.compute_loss must return a ModelOutput .* got dict with loss=None"):
        Trainer(DictLoss(), quiet(epochs=1, batch_size=4)).fit(torch.ones(8, 1))


class _Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer):
        if trainer.global_step == self.at:
            raise RuntimeError("crash")


class _Record(Callback):
    def __init__(self):
        self.starts, self.positions = [], []

    def on_epoch_start(self, trainer):
        self.starts.append(trainer.epoch)

    def on_step_end(self, trainer):
        self.positions.append((trainer.global_step, trainer.epoch, trainer.step_in_epoch, trainer.epoch_done))


def test_crash_mid_epoch_then_resume_replays_the_uninterrupted_run(tmp_path):
    """In-process crashes (an exception in a callback) at a mid-epoch step, twice, each resumed."""
    cfg = dict(epochs=3, batch_size=4, checkpoint_every_steps=1, keep_checkpoints=3)
    full_rec = _Record()
    full = Trainer(mlp(), quiet(**cfg, checkpoint_dir=str(tmp_path / "full")), callbacks=[full_rec])
    full_result = full.fit(DATA)
    assert full_rec.starts == [0, 1, 2]
    assert [p[1:] for p in full_rec.positions[:5]] == [(0, 1, False), (0, 2, False), (0, 3, False),
                                                         (0, 4, False), (1, 1, False)]
    model = mlp()
    for crash_at in (6, 10):  # mid-epoch 1, then mid-epoch 2 after resuming
        with pytest.raises(RuntimeError, match="crash"):
            Trainer(model, quiet(**cfg, checkpoint_dir=str(tmp_path / "run")), callbacks=[_Crash(crash_at)]).fit(
                DATA, resume=crash_at != 6)
    rec = _Record()
    result = Trainer(model, quiet(**cfg, checkpoint_dir=str(tmp_path / "run")), callbacks=[rec]).fit(DATA, resume=True)
    # the crash at step 10 came before that step was checkpointed (the Checkpointer runs last): resumed at 9
    assert rec.starts == [] and rec.positions == full_rec.positions[-3:]
    assert result.steps == 12 and result.history == full_result.history
    for a, b in zip(model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


def test_pending_loss_terms_are_flushed_every_log_interval():
    seen = []

    class Pending(Callback):
        def on_step_end(self, trainer):
            seen.append(len(trainer.meter._pending))

    Trainer(mlp(), quiet(epochs=1, batch_size=2, log_every_steps=3), callbacks=[Pending()]).fit(DATA)
    assert seen == [1, 2, 0, 1, 2, 0, 1, 2]


def test_grad_norm_is_measured_every_log_interval(tmp_path):
    got = []

    class Norms(Callback):
        def on_step_end(self, trainer):
            now = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in trainer.model.parameters()]))
            got.append(None if trainer.last_grad_norm is None else bool(torch.equal(trainer.last_grad_norm, now)))

    cfg = quiet(epochs=1, batch_size=2, log_path=str(tmp_path / "m.jsonl"), log_every_steps=3)
    Trainer(mlp(), cfg, callbacks=[Norms()]).fit(DATA)
    assert got == [None, None, True, False, False, True, False, False]  # measured at steps 3 and 6 only


# ---- optimizer, callbacks, counts, epoch logs ------------------------------------------------------------


@pytest.mark.parametrize("name, cls, expected", [
    ("adam", torch.optim.Adam, {"betas": (0.8, 0.9), "weight_decay": 0.01}),
    ("adamw", torch.optim.AdamW, {"betas": (0.8, 0.9), "weight_decay": 0.01}),
    ("sgd", torch.optim.SGD, {"momentum": 0.5, "weight_decay": 0.01}),
])
def test_build_optimizer_passes_every_setting(name, cls, expected):
    from isthmus.train.trainer import build_optimizer

    kw = {"momentum": 0.5} if name == "sgd" else {"betas": (0.8, 0.9)}
    opt = build_optimizer(mlp().parameters(), TrainerConfig(optimizer=name, lr=0.01, weight_decay=0.01, **kw))
    assert type(opt) is cls and opt.defaults["lr"] == 0.01
    assert {k: opt.defaults[k] for k in expected} == expected
    with pytest.raises(ValueError, match=r"^the model has no trainable parameters \(all have requires_grad=False\)$"):
        build_optimizer([], TrainerConfig(optimizer=name, **kw))


def test_early_stopping_gets_min_delta_and_needs_validation_data():
    trainer = Trainer(mlp(), quiet(epochs=1, batch_size=8, early_stopping_patience=2, min_delta=0.25))
    trainer.fit(DATA, val=DATA)
    (es,) = [cb for cb in trainer.callbacks if type(cb).__name__ == "EarlyStopping"]
    assert es.min_delta == 0.25 and es.patience == 2
    msg = ("TrainerConfig.early_stopping_patience monitors the validation loss; pass validation data with "
           "fit(train, val=...)")
    with pytest.raises(ConfigError, match="^" + re.escape(msg) + "$"):
        Trainer(mlp(), quiet(epochs=1, early_stopping_patience=2)).fit(DATA)


def test_fit_applies_the_thread_settings():
    class Threads(_Steps):
        def compute_loss(self, batch):
            self.autocast.append(torch.get_num_threads())
            return super().compute_loss(batch)

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for kw, expected in [({}, 1), ({"threads": 2}, 2), ({"runtime_defaults": False}, 3)]:
            model = Threads()
            Trainer(model, quiet(epochs=1, batch_size=8, **kw)).fit(torch.ones(8, 1))
            assert model.autocast[0] == expected and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_counts_for_drop_last_and_streams():
    trainer = Trainer(_Steps(), quiet(epochs=2, batch_size=4, drop_last=True, schedule="cosine"))
    trainer.fit(torch.arange(18.0).unsqueeze(1))
    assert trainer.total_steps == 8 and trainer._n_train == 18
    msg = "3 samples make no full batch of 4 with drop_last=True"
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        Trainer(_Steps(), quiet(epochs=1, batch_size=4, drop_last=True)).fit(torch.ones(3, 1))

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(torch.ones(6, 1))

    trainer = Trainer(_Steps(), quiet(epochs=1, batch_size=4))
    trainer.fit(Stream())
    assert trainer._n_train == -1 and trainer.total_steps == 0  # unknown length


def test_epoch_log_and_the_first_of_equal_validation_losses_is_best():
    class Flat(_Steps):
        def compute_loss(self, batch):
            out = super().compute_loss(batch)
            return out if self.training else ModelOutput(loss=torch.tensor(1.0), losses={})

    trainer = Trainer(Flat(), quiet(epochs=3, batch_size=4, lr=0.01))
    r = trainer.fit(torch.ones(8, 1), val=torch.ones(4, 1))
    assert [(h["epoch"], h["step"], h["lr"]) for h in r.history] == [(0, 2, 0.01), (1, 4, 0.01), (2, 6, 0.01)]
    assert r.best_epoch == 0 and r.best_val_loss == 1.0  # later equal losses are not improvements
