"""Trainer behaviour pinned to exact values, written against the survivors of `make mutate MODULES=trainer`
(docs/mutation.md): what a resume restores (callback state, an early stop, the mid-epoch data check),
the error messages that say what to fix, the logged gradient norm, evaluation batching, and the RNG
fallback for a rank the checkpoint holds no state for.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import IterableDataset

from isthmus._runtime import seed_everything
from isthmus.config import ConfigError
from isthmus.io import CheckpointError
from isthmus.models import AutoEncoder, ModelOutput
from isthmus.train import Callback, NonFiniteLossError, Trainer, TrainerConfig
from isthmus.train import checkpoint as ck
from isthmus.train.data import derive_seed
from isthmus.train.distributed import DistInfo

torch.set_num_threads(1)


def quiet(**kw) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", **kw})


def mlp(latent: int = 2) -> AutoEncoder:
    torch.manual_seed(0)
    return AutoEncoder.mlp(4, latent, hidden=(4,))


DATA = torch.linspace(0, 1, 64).reshape(16, 4)


# ---- what fit returns and logs -------------------------------------------------------------------------


def test_train_result_to_dict_holds_every_field():
    r = Trainer(mlp(), quiet(epochs=1, batch_size=8)).fit(DATA, val=DATA)
    d = r.to_dict()
    assert d == {"history": r.history, "best_val_loss": r.best_val_loss, "best_epoch": 0, "steps": 2,
                 "stopped_early": False, "runtime_s": r.runtime_s}
    json.dumps(d)  # JSON-ready


def test_logged_grad_norm_without_clipping_is_the_global_norm_of_the_last_step(tmp_path):
    model = mlp()
    trainer = Trainer(model, quiet(epochs=1, batch_size=8, log_path=str(tmp_path / "m.jsonl"), log_every_steps=1))
    trainer.fit(DATA)
    # the last step's gradients are still on the parameters (zero_grad runs at the start of a step)
    expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(trainer.last_grad_norm, expected)


class _NanTerms(nn.Module):
    def __init__(self, losses_fn):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.losses_fn = losses_fn

    def compute_loss(self, batch) -> ModelOutput:
        losses = self.losses_fn(self.w)
        return ModelOutput(loss=self.w * float("nan"), losses=losses)


@pytest.mark.parametrize("clip, hint", [
    (None, "lower the learning rate, enable grad_clip, or check the inputs for NaN"),
    (1.0, "lower the learning rate or grad_clip, or check the inputs for NaN"),
])
def test_nonfinite_message_is_exact(clip, hint):
    model = _NanTerms(lambda w: {"recon": w * float("nan"), "kl": 0.5})  # a tensor term and a float term
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(model, quiet(epochs=1, batch_size=4, grad_clip=clip)).fit(torch.zeros(8, 1))
    assert str(info.value) == f"loss became nan at step 0 (epoch 0): recon=nan, kl=0.5; {hint}"
    assert info.value.terms["kl"] == 0.5


def test_nonfinite_message_without_named_terms():
    with pytest.raises(NonFiniteLossError, match=r"\(epoch 0\): no named terms; lower"):
        Trainer(_NanTerms(lambda w: {}), quiet(epochs=1, batch_size=4)).fit(torch.zeros(8, 1))


# ---- evaluate ------------------------------------------------------------------------------------------


class _Probe(nn.Module):
    """Records the size of every batch it sees and every device it is moved to."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.sizes: list[int] = []
        self.moved: list = []

    def to(self, *args, **kw):
        self.moved.append(args[0] if args else kw.get("device"))
        return super().to(*args, **kw)

    def compute_loss(self, batch) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self.sizes.append(len(x))
        return ModelOutput(loss=self.w + x.mean(), losses={})


class _Rows(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(torch.ones(self.n, 2))


@pytest.mark.parametrize("batch_size, eval_batch_size, sizes", [
    (8, None, [256, 256, 88]),  # at least 256 rows per eval batch
    (100, None, [400, 200]),  # else 4 training batches
    (8, 50, [50] * 12),
])
@pytest.mark.parametrize("stream", [False, True])
def test_evaluate_batches_and_moves_the_model(batch_size, eval_batch_size, sizes, stream):
    probe = _Probe()
    trainer = Trainer(probe, quiet(batch_size=batch_size, eval_batch_size=eval_batch_size))
    out = trainer.evaluate(_Rows(600) if stream else torch.ones(600, 2))
    assert probe.sizes == sizes and out["loss"] == pytest.approx(1.0)
    assert probe.moved == [torch.device("cpu")] and probe.training  # back in the mode it was in


# ---- save_checkpoint called by user code ---------------------------------------------------------------


class _SaveAt(Callback):
    def __init__(self, step):
        self.step, self.saved = step, None

    def on_step_end(self, trainer):
        if trainer.global_step == self.step:
            self.saved = trainer.save_checkpoint()


def test_a_callbacks_save_is_a_mid_epoch_checkpoint(tmp_path):
    cb = _SaveAt(1)
    Trainer(mlp(), quiet(epochs=1, batch_size=4, checkpoint_dir=str(tmp_path)), callbacks=[cb]).fit(DATA)
    assert cb.saved == tmp_path / "ckpt-000000001-0"


def test_save_checkpoint_needs_a_checkpoint_dir_and_a_running_fit(tmp_path):
    msg = "^save_checkpoint needs TrainerConfig.checkpoint_dir and a running fit$"
    with pytest.raises(ConfigError, match=msg):
        Trainer(mlp(), quiet(epochs=1, batch_size=4), callbacks=[_SaveAt(1)]).fit(DATA)  # no checkpoint_dir
    with pytest.raises(ConfigError, match=msg):
        Trainer(mlp(), quiet(checkpoint_dir=str(tmp_path))).save_checkpoint()  # no fit yet


# ---- what a resume restores and checks -----------------------------------------------------------------


class _Count(Callback):
    def __init__(self, key="count"):
        self.key, self.n = key, 0

    @property
    def state_key(self):
        return self.key

    def on_step_end(self, trainer):
        self.n += 1

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def test_resume_restores_callback_state_and_starts_new_callbacks_fresh(tmp_path):
    cfg = quiet(epochs=1, batch_size=4, checkpoint_dir=str(tmp_path))
    Trainer(mlp(), cfg, callbacks=[_Count()]).fit(DATA)  # 4 steps
    counted, added = _Count(), _Count("added")  # "added" was not in the checkpoint
    r = Trainer(mlp(), quiet(epochs=2, batch_size=4, checkpoint_dir=str(tmp_path)),
                callbacks=[counted, added]).fit(DATA, resume=True)
    assert r.steps == 8 and counted.n == 8 and added.n == 4


class _Worsens(nn.Module):
    """Train loss (w - 10)^2, validation loss (w - 2)^2: validation gets worse once w passes 2."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def compute_loss(self, batch) -> ModelOutput:
        loss = (self.w - (10.0 if self.training else 2.0)) ** 2
        return ModelOutput(loss=loss, losses={"recon": loss})


def test_resuming_an_early_stopped_run_trains_no_further(tmp_path):
    cfg = quiet(epochs=30, batch_size=4, optimizer="sgd", lr=0.05, early_stopping_patience=1,
                checkpoint_dir=str(tmp_path))
    first = Trainer(_Worsens(), cfg).fit(torch.zeros(8, 1), val=torch.zeros(4, 1))
    assert first.stopped_early and first.steps < 60
    again = Trainer(_Worsens(), cfg).fit(torch.zeros(8, 1), val=torch.zeros(4, 1), resume=True)
    assert again.stopped_early and again.steps == first.steps and again.history == first.history


def _checkpoints(tmp_path, **kw):
    cfg = quiet(epochs=1, batch_size=4, checkpoint_dir=str(tmp_path), checkpoint_every_steps=1,
                keep_checkpoints=10, **kw)
    Trainer(mlp(), cfg).fit(DATA)  # 16 rows, 4 steps: a checkpoint after each, and one at the epoch end
    return {p.name: p for p in ck.list_checkpoints(tmp_path)}


@pytest.mark.parametrize("rows, batch_size", [(20, 4), (16, 8)])
def test_a_mid_epoch_checkpoint_refuses_other_data_or_batch_size(tmp_path, rows, batch_size):
    path = _checkpoints(tmp_path)["ckpt-000000001-0"]  # one step into the epoch
    expected = (f"{path} stopped mid-epoch with 16 samples in batches of 4; this fit has {rows} samples in "
                f"batches of {batch_size}. Resume with the same data and batch_size")
    with pytest.raises(CheckpointError, match="^" + re.escape(expected) + "$"):
        Trainer(mlp(), quiet(epochs=2, batch_size=batch_size)).fit(torch.rand(rows, 4), resume=path)


def test_an_epoch_end_checkpoint_resumes_with_other_data(tmp_path):
    path = _checkpoints(tmp_path)["ckpt-000000004-1"]
    r = Trainer(mlp(), quiet(epochs=2, batch_size=4)).fit(torch.rand(20, 4), resume=path)
    assert r.steps == 4 + 5


def test_a_checkpoint_taken_at_an_epochs_start_resumes_with_other_data(tmp_path):
    class SaveAtStart(Callback):
        def on_epoch_start(self, trainer):
            if trainer.epoch == 1:
                self.path = trainer.save_checkpoint()

    cb = SaveAtStart()
    Trainer(mlp(), quiet(epochs=2, batch_size=4, checkpoint_dir=str(tmp_path), keep_checkpoints=10),
            callbacks=[cb]).fit(DATA)
    r = Trainer(mlp(), quiet(epochs=2, batch_size=4)).fit(torch.rand(20, 4), resume=cb.path)
    assert r.steps == 4 + 5  # nothing of epoch 1 was trained yet: any data can follow


def test_unreadable_checkpoint_names_the_older_ones(tmp_path):
    names = _checkpoints(tmp_path)
    newest = names["ckpt-000000004-1"]
    (newest / "trainer_state.json").write_text("{")
    with pytest.raises(CheckpointError) as info:
        Trainer(mlp(), quiet(epochs=1, batch_size=4)).fit(DATA, resume=newest)
    others = sorted(n for n in names if n != newest.name)
    msg = str(info.value)
    assert msg.startswith(f"cannot resume from {newest}: ")
    assert msg.endswith(f"; older checkpoints there: {others} (pass fit(resume=<folder>))")


def test_unreadable_only_checkpoint_has_no_hint(tmp_path):
    Trainer(mlp(), quiet(epochs=1, batch_size=16, checkpoint_dir=str(tmp_path))).fit(DATA)
    (only,) = ck.list_checkpoints(tmp_path)
    (only / "trainer_state.json").write_text("{")
    with pytest.raises(CheckpointError) as info:
        Trainer(mlp(), quiet(epochs=1, batch_size=16)).fit(DATA, resume=only)
    assert "older checkpoints" not in str(info.value) and not str(info.value).endswith(";")


def test_mismatched_model_or_optimizer_errors_name_the_checkpoint(tmp_path):
    path = _checkpoints(tmp_path)["ckpt-000000004-1"]
    with pytest.raises(CheckpointError, match=re.escape(str(path / "model.safetensors")) + " does not match"):
        Trainer(mlp(latent=3), quiet(epochs=2, batch_size=4)).fit(DATA, resume=path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path} holds a Adam state but the trainer uses SGD")):
        Trainer(mlp(), quiet(epochs=2, batch_size=4, optimizer="sgd")).fit(DATA, resume=path)


def test_a_rank_without_saved_rng_restores_rank_0s_generators_and_reseeds(tmp_path):
    """Resuming with more ranks than the checkpoint was written with (fault injection: rank 1 of 2 on
    a one-process checkpoint)."""
    cfg = quiet(epochs=1, batch_size=8, grad_noise_eta=0.1, checkpoint_dir=str(tmp_path))
    trainer = Trainer(mlp(), cfg)
    trainer.fit(DATA)
    c = ck.load_checkpoint(ck.find_latest(tmp_path))
    trainer._noise.generator.manual_seed(123)  # disturb what the restore must put back
    trainer.dist = DistInfo(rank=1, world=2)
    warning = ("the checkpoint holds no RNG state for rank 1; it reseeds, so stochastic layers will not replay "
               "the uninterrupted run")
    with pytest.warns(UserWarning, match="^" + re.escape(warning) + "$"):
        trainer._restore_rng(c.rng_tensors, c.state)
    assert torch.equal(trainer._noise.generator.get_state(), c.rng_tensors["gen_grad_noise"])
    drawn = torch.rand(5)
    seed_everything(derive_seed(cfg.seed, 3, 1, trainer.global_step))
    assert torch.equal(drawn, torch.rand(5))


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
