"""One save/load base for every saved model (isthmus.io.Pretrained): SHA-256 verified on load, eval
mode + no-grad inference after loading, umask-respecting file modes, disk-full as a plain OSError."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import torch

from isthmus import io
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.toy.model import ToyConfig, ToyTransformer
from isthmus.io import CheckpointError, atomic_write_json, read_json
from isthmus.models import AutoEncoder
from isthmus.models.multimodal_gpvae import MultimodalGPVAE, MultimodalGPVAEConfig
from isthmus.models.stackvae import StackVAEG, StackVAEGConfig


def _models():
    torch.manual_seed(0)
    return {
        "AutoEncoder": AutoEncoder.mlp(12, latent_dim=3, hidden=[16], bottleneck="gaussian"),
        "SparseAutoEncoder": SparseAutoEncoder(SAEConfig(d_in=8, d_sae=16, bottleneck="sae_topk",
                                                         bottleneck_config={"k": 2})),
        "StackVAEG": StackVAEG(StackVAEGConfig(n_channels=3, window=4, hidden=[8], latent_dim=2, k=2)),
        "MultimodalGPVAE": MultimodalGPVAE(MultimodalGPVAEConfig(image_dim=8, n_neurons=5, hidden=[8])),
        "ToyTransformer": ToyTransformer(ToyConfig(vocab_size=8, n_ctx=8, n_layers=1, d_model=8, n_heads=2)),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_round_trip_records_digest_and_loads_in_eval_mode(tmp_path, name):
    model = _models()[name]
    model.train()
    model.save_pretrained(tmp_path / "m")
    spec = read_json(tmp_path / "m" / "config.json")
    assert spec["model"] == name
    assert spec["weights"]["model.safetensors"]["sha256"] == io.sha256_file(tmp_path / "m" / "model.safetensors")
    back = type(model).from_pretrained(tmp_path / "m", map_location="cpu")
    assert not back.training and not any(m.training for m in back.modules())
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", list(_models()))
def test_flipped_bytes_in_the_tensor_data_are_refused(tmp_path, name):
    model = _models()[name]
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    for i in range(len(raw) - 40, len(raw)):  # the tail is tensor data, not the JSON header
        raw[i] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256"):
        type(model).from_pretrained(tmp_path / "m")


def test_folder_without_digest_loads_with_a_warning(tmp_path):
    model = _models()["AutoEncoder"]
    model.save_pretrained(tmp_path / "m")
    spec = read_json(tmp_path / "m" / "config.json")
    del spec["weights"]
    atomic_write_json(tmp_path / "m" / "config.json", spec)
    with pytest.warns(UserWarning, match="no SHA-256"):
        AutoEncoder.from_pretrained(tmp_path / "m")


def test_missing_config_names_the_missing_file(tmp_path):
    _models()["AutoEncoder"].save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"m/config.json does not exist"):
        AutoEncoder.from_pretrained(tmp_path / "m")


def test_loaded_autoencoder_encodes_deterministically_without_a_graph(tmp_path):
    model = _models()["AutoEncoder"]
    model.save_pretrained(tmp_path / "m")
    back = AutoEncoder.from_pretrained(tmp_path / "m")
    x = torch.randn(5, 12)
    z1, z2 = back.encode(x), back.encode(x.numpy())  # NumPy input works too
    assert torch.equal(z1, z2)
    assert not z1.requires_grad and not back.decode(z1).requires_grad
    # attribution still works: an input that asks for gradients gets them
    xg = x.clone().requires_grad_(True)
    back.encode(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
    # training mode keeps the graph (the Trainer and losses that call encode need it)
    back.train()
    assert back.encode(x).requires_grad


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_saved_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        _models()["AutoEncoder"].save_pretrained(tmp_path / "m", metrics={"mse": 1.0})
    finally:
        os.umask(old)
    for f in (tmp_path / "m").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f.name


def test_disk_full_while_writing_tensors_is_an_oserror_and_leaves_nothing(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device\" }) (os error 28)")

    monkeypatch.setattr(io, "save_file", full)
    with pytest.raises(OSError) as info:
        io.save_tensors(tmp_path / "w.safetensors", {"a": torch.zeros(3)})
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
