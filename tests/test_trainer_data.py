"""The Trainer on torch Datasets and DataLoaders: map-style (in-process or through workers),
iterable streams, ready DataLoaders; same batches as the in-memory path where the order is ours."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from isthmus.config import ConfigError
from isthmus.models import AutoEncoder
from isthmus.train import Callback, Trainer, TrainerConfig

X = torch.rand(100, 6, generator=torch.Generator().manual_seed(0))


class Rows(Dataset):
    """A plain map-style dataset (no tensors attribute, so the Trainer must index it)."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


class Stream(IterableDataset):
    """An unsized stream in a fixed order; records the epochs it was told about."""

    def __init__(self, x):
        self.x = x
        self.epochs: list[int] = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(self.x)


def _model():
    torch.manual_seed(0)
    return AutoEncoder.mlp(6, 2, hidden=[8])


def _fit(data, val=None, **cfg):
    model = _model()
    kw = dict(epochs=2, batch_size=16, progress=False, device="cpu") | cfg
    result = Trainer(model, TrainerConfig(**kw)).fit(data, val)
    return model, result


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_map_style_dataset_in_process_and_through_workers_match_the_tensor_path():
    ref, ref_result = _fit(X, X[:20])
    ds, _ = _fit(Rows(X), Rows(X[:20]))
    workers, w_result = _fit(Rows(X), Rows(X[:20]), num_workers=1)
    assert _same(ref, ds) and _same(ref, workers)
    assert w_result.history[-1]["val_loss"] == pytest.approx(ref_result.history[-1]["val_loss"], rel=1e-6)


def test_iterable_stream_trains_and_is_told_the_epoch():
    stream = Stream(X)
    model, result = _fit(stream, shuffle=False, epochs=3)
    assert stream.epochs == [0, 1, 2]
    assert result.steps == 3 * 7  # 100 rows in batches of 16: 7 per epoch, found by iterating
    ref, _ = _fit(X, shuffle=False, epochs=3)  # the same order in memory gives the same weights
    assert _same(model, ref)


def test_unsized_stream_rejects_a_schedule_that_needs_the_step_count():
    with pytest.raises(ConfigError, match="no length"):
        _fit(Stream(X), schedule="cosine")


def test_a_ready_dataloader_is_used_as_given():
    loader = DataLoader(TensorDataset(X), batch_size=25, shuffle=False)
    model, result = _fit(loader, DataLoader(TensorDataset(X[:20]), batch_size=8))
    assert result.steps == 2 * 4  # the loader's batch size wins over TrainerConfig.batch_size
    assert "val_loss" in result.history[-1]


class _Crash(Callback):
    def on_step_end(self, trainer):
        if trainer.global_step == 6:
            raise KeyboardInterrupt


@pytest.mark.parametrize("make", [lambda: Stream(X), lambda: Rows(X)], ids=["stream", "map-style"])
def test_resume_mid_epoch_replays_the_uninterrupted_run(tmp_path, make):
    """A stream resumed mid-epoch re-reads the epoch and skips what was trained (exact for a fixed order)."""
    cfg = dict(checkpoint_dir=str(tmp_path / "ck"), checkpoint_every_steps=4, shuffle=False, epochs=2)
    ref, ref_result = _fit(make(), shuffle=False, epochs=2)
    crashed = _model()
    with pytest.raises(KeyboardInterrupt):
        Trainer(crashed, TrainerConfig(epochs=2, batch_size=16, progress=False, device="cpu", **{
            k: v for k, v in cfg.items() if k != "epochs"}), callbacks=[_Crash()]).fit(make())
    resumed = _model()
    result = Trainer(resumed, TrainerConfig(batch_size=16, progress=False, device="cpu", **cfg)).fit(
        make(), resume=True)
    assert result.steps == ref_result.steps
    assert _same(resumed, ref)
