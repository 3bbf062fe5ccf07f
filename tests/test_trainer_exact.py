"""Trainer behaviour pinned to exact values, written against the survivors of `make mutate MODULES=trainer`
(docs/mutation.md): what a resume restores (callback state, an early stop, the mid-epoch data check),
the error messages that say what to fix, the logged gradient norm, evaluation batching, and the RNG
fallback for a rank the checkpoint holds no state for.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn
from torch.utils.data import IterableDataset

from isthmus._runtime import seed_everything
from isthmus.config import ConfigError
from isthmus.io import CheckpointError
from isthmus.models import ModelOutput
from isthmus.train import Callback, NonFiniteLossError, Trainer
from isthmus.train import checkpoint as ck
from isthmus.train.data import derive_seed
from isthmus.train.distributed import DistInfo

torch.set_num_threads(1)


from cases_trainer import DATA, mlp, quiet  # noqa: E402


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

