"""Atomic, pickle-free persistence helpers (isthmus.io)."""

from __future__ import annotations

import pytest
import torch

from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.io import CheckpointError, atomic_write_json, load_config_model, read_json
from isthmus.models.stackvae import StackVAEG


def test_atomic_json_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert read_json(tmp_path / "a.json") == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_config_model_round_trip_and_wrong_class(tmp_path):
    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=16, bottleneck="sae_topk", bottleneck_config={"k": 2}))
    sae.save_pretrained(tmp_path / "sae", metrics={"fvu": 0.1})
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    back = SparseAutoEncoder.from_pretrained(tmp_path / "sae")
    for (k, a), (_, b) in zip(sae.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="describes a 'SparseAutoEncoder', not a StackVAEG"):
        StackVAEG.from_pretrained(tmp_path / "sae")
    with pytest.raises(CheckpointError, match="not a folder"):
        load_config_model(SparseAutoEncoder, SAEConfig, tmp_path / "missing")
