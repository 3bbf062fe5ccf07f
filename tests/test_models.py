from __future__ import annotations

import json

import pytest
import torch

from isthmus.bottlenecks import GaussianBottleneck, GaussianConfig, build_bottleneck
from isthmus.config import ConfigError
from isthmus.io import CheckpointError
from isthmus.models import AutoEncoder


def test_encoder_bottleneck_mismatch_is_explained():
    from isthmus.nn import MLP, MLPConfig

    enc = MLP(MLPConfig(in_dim=4, out_dim=3, hidden=[]))
    dec = MLP(MLPConfig(in_dim=2, out_dim=4, hidden=[]))
    with pytest.raises(ConfigError, match="needs in_features=4"):
        AutoEncoder(enc, build_bottleneck("gaussian", latent_dim=2), dec)


def test_bad_inputs_are_explained():
    m = AutoEncoder.mlp(6, latent_dim=2, hidden=(8,))
    x = torch.rand(3, 6)
    x[1, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf \(first at index \[1, 4\]\)"):
        m(x)
    with pytest.raises(ValueError, match="expects inputs with 6 features"):
        m(torch.rand(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        m(torch.ones(3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        m(torch.rand(0, 6))


def test_unknown_loss_weight_rejected():
    m = AutoEncoder.mlp(6, latent_dim=2, hidden=(8,), objective={"loss_weights": {"kll": 2.0}})
    with pytest.raises(ConfigError, match=r"unknown term\(s\) \['kll'\]"):
        m(torch.rand(2, 6))


def test_loss_weights_scale_terms():
    torch.manual_seed(0)
    m = AutoEncoder.mlp(6, latent_dim=2, hidden=(8,), bottleneck="gaussian")
    m.eval()
    x = torch.rand(4, 6)
    base = m(x).losses
    m.objective.loss_weights = {"kl": 3.0}
    torch.testing.assert_close(m(x).losses["kl"], 3 * base["kl"])


def test_truncated_checkpoint(tmp_path):
    m = AutoEncoder.mlp(6, latent_dim=2, hidden=(8,))
    m.save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        AutoEncoder.from_pretrained(tmp_path)


def test_mismatched_checkpoint(tmp_path):
    AutoEncoder.mlp(6, latent_dim=2, hidden=(8,)).save_pretrained(tmp_path)
    spec = json.loads((tmp_path / "config.json").read_text())
    spec["decoder"]["config"]["hidden"] = [9]
    (tmp_path / "config.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        AutoEncoder.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="not a folder"):
        AutoEncoder.from_pretrained(tmp_path / "missing")


def test_kl_warmup_and_free_bits():
    bn = GaussianBottleneck(GaussianConfig(latent_dim=3, beta=2.0, kl_warmup_steps=10))
    h = torch.zeros(5, 6)  # mu = 0, logvar = 0 -> KL = 0 exactly
    assert bn(h).losses["kl"].item() == 0.0
    h[:, 0] = 1.0  # one dimension with mu=1 -> KL 0.5 per sample
    bn.set_step(5)
    assert bn.kl_weight() == pytest.approx(1.0)
    assert bn(h).losses["kl"].item() == pytest.approx(0.5)
    free = GaussianBottleneck(GaussianConfig(latent_dim=3, free_bits=0.2))
    # dims 1 and 2 have KL 0 but are floored at 0.2 nats each
    assert free(h).losses["kl"].item() == pytest.approx(0.5 + 0.4)
    assert free(h).stats["kl"].item() == pytest.approx(0.5)


def test_vae_eval_is_deterministic_and_uses_mean():
    torch.manual_seed(0)
    m = AutoEncoder.mlp(6, latent_dim=2, hidden=(8,), bottleneck="gaussian").eval()
    x = torch.rand(4, 6)
    torch.testing.assert_close(m.encode(x), m.encode(x))
    torch.testing.assert_close(m.encode(x), m.encoder(x)[:, :2])


def test_denoising_only_in_training():
    torch.manual_seed(0)
    m = AutoEncoder.mlp(6, latent_dim=2, hidden=(8,), objective={"corruption": "gaussian", "corruption_level": 1.0})
    x = torch.rand(4, 6)
    m.eval()
    torch.testing.assert_close(m(x).loss, m(x).loss)
    m.train()
    assert m(x).loss.item() != m(x).loss.item()


def test_set_step_reaches_bottleneck():
    m = AutoEncoder.mlp(6, latent_dim=2, hidden=(8,), bottleneck="gaussian", kl_warmup_steps=4)
    m.set_step(2)
    assert int(m.bottleneck.step) == 2
    assert "bottleneck.step" in m.state_dict()
