"""Checkpoint fault injection: saves that fail midway, corrupt or stale pointers, foreign or mismatched
checkpoints, optimizer state round trips, and ``restore_best`` across a crash.

The SIGKILL tests in test_trainer_resume.py only exercise the happy path (the newest checkpoint is the
pointer target, the best epoch comes after the last resume); these cover the orderings and metadata
checks that a one-line slip in ``train/checkpoint.py`` would break (audit C01-C25).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from isthmus.io import CheckpointError
from isthmus.models import AutoEncoder
from isthmus.train import Callback, Trainer, TrainerConfig
from isthmus.train import checkpoint as ck


def _opt(kind=torch.optim.Adam, **kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = kind(model.parameters(), **kw)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    return model, opt


def _save(root: Path, step: int, keep: int = 5, best=None, opt=None) -> Path:
    model, default_opt = _opt()
    with torch.no_grad():
        model.weight.fill_(float(step))
    return ck.save_checkpoint(root, ck.checkpoint_name(step, False), model_state=model.state_dict(),
                              optimizer=opt or default_opt, rng_tensors={"cpu": torch.zeros(3, dtype=torch.uint8)},
                              state={"global_step": step}, best_model=best, keep=keep)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- a save that fails midway changes nothing ---------------------------------------------------------
@pytest.fixture
def two_checkpoints(tmp_path) -> Path:
    root = tmp_path / "ck"
    _save(root, 10)
    _save(root, 20)
    return root


def _fail_on_rename_of(monkeypatch, prefix: str) -> None:
    real = Path.rename

    def rename(self, target):
        if self.name.startswith(prefix):
            raise OSError("injected: disk full")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)


@pytest.mark.parametrize("step, where", [
    (30, "tensors"), (30, "rename-into-place"),  # a new step
    (20, "tensors"), (20, "rename-into-place"), (20, "rename-aside"),  # re-creating an existing step
])
def test_failed_save_leaves_pointer_and_every_folder_unchanged(two_checkpoints, monkeypatch, where, step):
    root = two_checkpoints
    before = _snapshot(root)
    if where == "tensors":
        calls = {"n": 0}
        real = ck.save_tensors

        def flaky(path, *a, **k):
            calls["n"] += 1
            if calls["n"] == 3:  # model and optimizer written, rng not
                raise OSError("injected: disk full")
            return real(path, *a, **k)

        monkeypatch.setattr(ck, "save_tensors", flaky)
    elif where == "rename-into-place":
        _fail_on_rename_of(monkeypatch, ".tmp-")
    else:
        _fail_on_rename_of(monkeypatch, "ckpt-")  # moving an existing same-name folder aside
    with pytest.raises(OSError, match="injected"):
        _save(root, step)
    monkeypatch.undo()
    assert _snapshot(root) == before  # latest.json, both folders, no temp or trash folder left
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-000000010-0", "ckpt-000000020-0", "latest.json"]
    assert ck.find_latest(root).name == "ckpt-000000020-0"


def test_save_creates_nested_folders_stamps_every_file_and_keeps_two_by_default(tmp_path):
    from safetensors import safe_open

    root = tmp_path / "runs" / "a" / "ck"  # none of these exist yet
    model, opt = _opt()
    for step in (1, 2, 3):
        folder = ck.save_checkpoint(root, ck.checkpoint_name(step, True), model_state=model.state_dict(),
                                    optimizer=opt, rng_tensors={"cpu": torch.zeros(2, dtype=torch.uint8)},
                                    state={"global_step": step}, best_model=model.state_dict())
    assert [p.name for p in ck.list_checkpoints(root)] == ["ckpt-000000002-1", "ckpt-000000003-1"]
    for f in folder.glob("*.safetensors"):  # identifiable as ours by any safetensors reader
        with safe_open(str(f), "pt") as fh:
            assert fh.metadata() == {"format": ck.FORMAT}, f.name


def test_a_failure_after_the_rename_surfaces_as_itself(two_checkpoints, monkeypatch):
    def broken_fsync(path):
        raise OSError("injected: fsync failed")

    monkeypatch.setattr(ck, "_fsync_dir", broken_fsync)
    with pytest.raises(OSError, match="injected"):  # not a FileNotFoundError from cleaning up the temp folder
        _save(two_checkpoints, 30)
    assert ck.find_latest(two_checkpoints).name == "ckpt-000000020-0"  # the pointer was not moved


def test_pruning_tolerates_a_folder_removed_meanwhile(two_checkpoints, monkeypatch):
    listed = ck.list_checkpoints
    ghost = two_checkpoints / "ckpt-000000005-0"  # listed, then removed by another process
    monkeypatch.setattr(ck, "list_checkpoints", lambda root: [ghost, *listed(root)])
    _save(two_checkpoints, 30, keep=2)
    assert [p.name for p in listed(two_checkpoints)] == ["ckpt-000000020-0", "ckpt-000000030-0"]


def test_leftovers_that_cannot_be_removed_never_fail_a_save(two_checkpoints, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # rmtree refuses symlinks: stand-ins for leftovers another process holds or is removing
    (two_checkpoints / ".tmp-ckpt-000000007-0-999").symlink_to(elsewhere)
    (two_checkpoints / "ckpt-000000001-0").symlink_to(elsewhere)  # oldest, so due for pruning
    _save(two_checkpoints, 30, keep=2)
    assert ck.find_latest(two_checkpoints).name == "ckpt-000000030-0" and elsewhere.is_dir()


def test_recreating_a_step_replaces_the_folder(two_checkpoints):
    root = two_checkpoints
    _save(root, 20, best={"w": torch.ones(2)})
    assert ck.load_checkpoint(root / "ckpt-000000020-0").best_model["w"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-000000010-0", "ckpt-000000020-0", "latest.json"]


def test_save_syncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    synced, real_fsync, opened = [], os.fsync, {}
    real_open = os.open

    def spy_open(path, flags, *a, **k):
        fd = real_open(path, flags, *a, **k)
        opened[fd] = Path(path)
        return fd

    def spy_fsync(fd):
        synced.append(opened.get(fd))
        return real_fsync(fd)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    _save(tmp_path / "ck", 10)
    assert tmp_path / "ck" in synced  # the rename is durable only once the directory entry is synced


# ---- pointers ---------------------------------------------------------------------------------------------
def test_pointer_wins_over_the_newest_folder_and_records_the_step(two_checkpoints):
    root = two_checkpoints
    assert json.loads((root / "latest.json").read_text()) == {"checkpoint": "ckpt-000000020-0", "global_step": 20}
    (root / "latest.json").write_text(json.dumps({"checkpoint": "ckpt-000000010-0"}))  # resumed from older
    assert ck.find_latest(root).name == "ckpt-000000010-0"


@pytest.mark.parametrize("pointer", ['{"checkp', "[1, 2]", '{"other": 1}', '{"checkpoint": "ckpt-000000099-0"}'])
def test_corrupt_or_stale_pointer_falls_back_to_the_newest_folder(tmp_path, pointer):
    root = tmp_path / "ck"
    for step in (10, 30, 20):
        _save(root, step)
    (root / "latest.json").write_text(pointer)
    assert ck.find_latest(root).name == "ckpt-000000030-0"


def test_no_checkpoints_and_listing_order(tmp_path):
    assert ck.find_latest(tmp_path / "missing") is None
    assert ck.list_checkpoints(tmp_path / "missing") == []
    root = tmp_path / "ck"
    for step in (30, 10, 20):
        _save(root, step)
    (root / "ckpt-not-a-checkpoint").mkdir()
    (root / "ckpt-000000040-0").write_text("a file, not a folder")
    assert [p.name for p in ck.list_checkpoints(root)] == ["ckpt-000000010-0", "ckpt-000000020-0", "ckpt-000000030-0"]


def test_prune_keeps_the_newest_and_protects_the_one_just_written(tmp_path):
    root = tmp_path / "ck"
    for step in (10, 20, 30):
        _save(root, step, keep=2)
    assert [p.name for p in ck.list_checkpoints(root)] == ["ckpt-000000020-0", "ckpt-000000030-0"]
    _save(root, 12, keep=2)  # after resuming from an older checkpoint: not among the newest two, yet kept
    assert [p.name for p in ck.list_checkpoints(root)] == ["ckpt-000000012-0", "ckpt-000000020-0",
                                                          "ckpt-000000030-0"]
    assert ck.find_latest(root).name == "ckpt-000000012-0"


# ---- foreign or mismatched checkpoints -------------------------------------------------------------------
def _edit_state(folder: Path, **changes) -> None:
    state = json.loads((folder / "trainer_state.json").read_text())
    state.update(changes)
    (folder / "trainer_state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("changes, message", [
    ({"version": 2}, "checkpoint version 2; this isthmus reads 1"),
    ({"version": None}, "checkpoint version None"),
    ({"format": "someone-elses-checkpoint"}, "not an isthmus trainer checkpoint"),
])
def test_foreign_checkpoint_metadata_is_rejected(tmp_path, changes, message):
    folder = _save(tmp_path / "ck", 10)
    _edit_state(folder, **changes)
    with pytest.raises(CheckpointError, match=message):
        ck.load_checkpoint(folder)


def test_non_dict_state_and_missing_folder_are_rejected(tmp_path):
    folder = _save(tmp_path / "ck", 10)
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        ck.load_checkpoint(tmp_path / "nowhere")
    (folder / "trainer_state.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not an isthmus trainer checkpoint"):
        ck.load_checkpoint(folder)


def test_load_returns_what_was_saved(tmp_path):
    model, opt = _opt()
    folder = _save(tmp_path / "ck", 10, best={"w": torch.arange(3.0)}, opt=opt)
    c = ck.load_checkpoint(folder)
    assert c.path == folder and c.state["global_step"] == 10 and c.state["version"] == ck.VERSION
    assert torch.equal(c.model["weight"], torch.full((2, 3), 10.0))
    assert torch.equal(c.best_model["w"], torch.arange(3.0))
    assert c.rng_tensors["cpu"].dtype == torch.uint8
    assert c.optimizer["meta"]["class"] == "Adam"
    assert torch.equal(c.optimizer["tensors"]["state/0/exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert ck.load_checkpoint(_save(tmp_path / "ck2", 10)).best_model is None


# ---- optimizer state ↔ flat ------------------------------------------------------------------------------
def test_optimizer_round_trip_restores_state_and_saved_param_groups():
    _, adam = _opt(lr=0.1, betas=(0.8, 0.9))
    tensors, meta = ck.optimizer_to_flat(adam)
    json.dumps(meta)  # the non-tensor part must be JSON
    model2 = torch.nn.Linear(3, 2)
    adam2 = torch.optim.Adam(model2.parameters(), lr=0.5)
    ck.optimizer_from_flat(adam2, tensors, meta, "ckpt")
    g = adam2.param_groups[0]
    assert g["lr"] == 0.1 and g["betas"] == (0.8, 0.9) and isinstance(g["betas"], tuple)
    for pid, state in adam.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(adam2.state_dict()["state"][pid][key], value), key


class _CountingSGD(torch.optim.SGD):
    """SGD that also keeps a Python-int per-parameter counter (scalar, non-tensor state)."""

    def step(self, closure=None):
        out = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["count"] = self.state[p].get("count", 0) + 1
        return out


def test_scalar_optimizer_state_survives_the_round_trip():
    _, opt = _opt(_CountingSGD, lr=0.1, momentum=0.9)
    opt.step()
    tensors, meta = ck.optimizer_to_flat(opt)
    assert meta["scalars"] == {"0": {"count": 2}, "1": {"count": 2}}
    fresh = _CountingSGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    ck.optimizer_from_flat(fresh, tensors, meta, "ckpt")
    assert [s["count"] for s in fresh.state_dict()["state"].values()] == [2, 2]


def test_wrong_optimizer_class_is_rejected():
    _, adam = _opt()
    tensors, meta = ck.optimizer_to_flat(adam)
    sgd = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="holds a Adam state but the trainer uses SGD; resume with the "
                                              "optimizer the checkpoint was written with"):
        ck.optimizer_from_flat(sgd, tensors, meta, "ckpt")


def test_wrong_parameter_layout_is_rejected():
    _, adam = _opt()
    tensors, meta = ck.optimizer_to_flat(adam)
    other = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(CheckpointError, match=r"parameter groups of sizes \[2\] but the model has \[1\]; "
                                              "the checkpoint is from a different model"):
        ck.optimizer_from_flat(other, tensors, meta, "ckpt")


class _Tagged(torch.optim.Optimizer):
    """An optimizer whose state has a key with a slash and a parameter with only scalar state."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})

    def step(self, closure=None):
        first, second = self.param_groups[0]["params"]
        self.state[first]["moments/2"] = torch.full_like(first, 7.0)
        self.state[second]["count"] = self.state[second].get("count", 0) + 1


def test_state_keys_with_slashes_and_scalar_only_parameters_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = _Tagged(model.parameters())
    opt.step()
    opt.step()
    tensors, meta = ck.optimizer_to_flat(opt)
    assert set(tensors) == {"state/0/moments/2"} and meta["scalars"] == {"1": {"count": 2}}
    fresh = _Tagged(torch.nn.Linear(3, 2).parameters())
    ck.optimizer_from_flat(fresh, tensors, meta, "ckpt")
    state = fresh.state_dict()["state"]
    assert torch.equal(state[0]["moments/2"], torch.full((2, 3), 7.0)) and state[1] == {"count": 2}
    del meta["scalars"]  # optional: a checkpoint with tensor state only
    ck.optimizer_from_flat(_Tagged(torch.nn.Linear(3, 2).parameters()), tensors, meta, "ckpt")


def test_torch_refusing_the_state_is_reported_as_a_checkpoint_error(monkeypatch):
    _, adam = _opt()
    tensors, meta = ck.optimizer_to_flat(adam)
    target = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())

    def refuse(state_dict):
        raise ValueError("torch says no")

    monkeypatch.setattr(target, "load_state_dict", refuse)
    with pytest.raises(CheckpointError, match="ckpt-x does not fit this optimizer: torch says no"):
        ck.optimizer_from_flat(target, tensors, meta, "ckpt-x")


def test_unsaveable_optimizer_state_raises_instead_of_dropping_it():
    _, opt = _opt(torch.optim.SGD, lr=0.1)
    opt.state[opt.param_groups[0]["params"][0]]["history"] = [1.0, 2.0]
    with pytest.raises(CheckpointError, match="'history' of parameter 0 is a list; only tensors and JSON "
                                              "scalars can be saved without pickle"):
        ck.optimizer_to_flat(opt)
    _, opt = _opt(torch.optim.SGD, lr=0.1)
    opt.param_groups[0]["hook"] = object()
    with pytest.raises(CheckpointError, match=r"param_group field 'hook' \(object\) is not JSON-safe"):
        ck.optimizer_to_flat(opt)


# ---- restore_best across a crash ---------------------------------------------------------------------------
class _CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


def _fit_best(ckpt: Path | None, crash_at: int = 0, resume=False):
    # validation rows are the negated training rows: every epoch of training makes them worse, so the
    # best epoch is the first one, long before the crash and the checkpoint resumed from
    torch.manual_seed(3)
    x = torch.rand(96, 10)
    model = AutoEncoder.mlp(10, 3, hidden=(12,))
    cfg = TrainerConfig(epochs=4, batch_size=16, lr=0.01, restore_best=True, progress=False, device="cpu",
                        checkpoint_dir=str(ckpt) if ckpt else None)
    trainer = Trainer(model, cfg, callbacks=[_CrashAt(crash_at)] if crash_at else [])
    return model, trainer.fit(x, val=-x[:32], resume=resume)


def test_restore_best_after_resume_restores_the_epoch_before_the_crash(tmp_path):
    ref_model, ref = _fit_best(None)
    assert ref.best_epoch == 0 and len(ref.history) == 4  # the premise of this test
    with pytest.raises(KeyboardInterrupt):
        _fit_best(tmp_path / "ck", crash_at=15)  # in epoch 2; the last checkpoint is epoch 1's end (step 12)
    assert ck.find_latest(tmp_path / "ck").name == "ckpt-000000012-1"
    model, result = _fit_best(tmp_path / "ck", resume=True)
    assert result.best_epoch == 0 and result.best_val_loss == ref.best_val_loss
    for (k, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), f"{k}: restore_best did not restore epoch 0's weights after the resume"
