"""SparseAutoEncoder: unit-norm decoder, save/load, Trainer and train_sae integration, dead latents."""

from __future__ import annotations

import json

import pytest
import torch

from isthmus.bottlenecks import BOTTLENECKS
from isthmus.config import ConfigError
from isthmus.interp.sae import (
    SAEConfig, SAETrainConfig, SparseAutoEncoder, UnitNormDecoder, resample_dead_latents, train_sae,
)
from isthmus.train import Trainer, TrainerConfig


def _sae(**kw):
    torch.manual_seed(0)
    base = dict(d_in=16, d_sae=64, bottleneck_config={"k": 4})
    return SparseAutoEncoder(SAEConfig(**{**base, **kw}))


def test_decoder_gradient_is_projected_and_rows_stay_unit_norm():
    sae = _sae()
    sae.compute_loss(torch.randn(32, 16)).loss.backward()
    g, w = sae.W_dec.grad, sae.W_dec.detach()
    assert (g * w).sum(1).abs().max() < 1e-5, "gradient has a component parallel to the rows"
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    opt.step()
    sae.normalize_decoder_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


def test_save_pretrained_roundtrip(tmp_path):
    sae = _sae(bottleneck="sae_batchtopk")
    sae.train()(torch.randn(64, 16))  # estimates the BatchTopK threshold buffer
    sae.save_pretrained(tmp_path / "sae", metrics={"fvu": 0.1})
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    assert json.loads((tmp_path / "sae" / "config.json").read_text())["config"]["bottleneck"] == "sae_batchtopk"
    loaded = SparseAutoEncoder.from_pretrained(tmp_path / "sae").eval()
    sae.eval()
    x = torch.randn(8, 16)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(loaded.bottleneck.threshold, sae.bottleneck.threshold)


def test_sae_uses_the_one_pretrained_base_and_old_folders_still_load(tmp_path):
    from safetensors.torch import save_file

    from isthmus.interp.transcoder import Transcoder, TranscoderConfig
    from isthmus.io import Pretrained, save_config_model

    sae, x = _sae().eval(), torch.randn(8, 16)
    assert isinstance(sae, Pretrained) and issubclass(Transcoder, Pretrained)
    save_config_model(sae, tmp_path / "fn", sae.config)  # the writer SparseAutoEncoder used before it joined Pretrained
    sae.save_pretrained(tmp_path / "new")
    old_cfg, new_cfg = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("fn", "new"))
    assert {k: v for k, v in old_cfg.items() if k != "weights"} == {k: v for k, v in new_cfg.items() if k != "weights"}
    # an SAE folder from before weight digests: config.json without "weights", plain safetensors
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"model": "SparseAutoEncoder", "config": sae.config.to_dict()}))
    save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, str(legacy / "model.safetensors"))
    with pytest.warns(UserWarning, match="no SHA-256"):
        loaded = SparseAutoEncoder.from_pretrained(legacy, map_location="cpu")
    for folder in ("fn", "new"):
        torch.testing.assert_close(SparseAutoEncoder.from_pretrained(tmp_path / folder).encode(x), sae.encode(x))
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))
    tc = Transcoder(TranscoderConfig(d_in=8, d_out=6, d_sae=16, bottleneck_config={"k": 2}, skip=True))
    tc.save_pretrained(tmp_path / "tc")
    assert Transcoder.from_pretrained(tmp_path / "tc").config == tc.config
    with pytest.raises(Exception, match="describes a 'Transcoder'"):
        SparseAutoEncoder.from_pretrained(tmp_path / "tc")


def test_config_rejects_non_sparse_bottleneck():
    with pytest.raises(ConfigError, match="bottleneck"):
        SAEConfig(bottleneck="gaussian")


def test_trainer_trains_sae_and_keeps_unit_norm():
    sae = _sae()
    x = torch.randn(512, 16)
    before = float(sae.compute_loss(x).loss.detach())
    Trainer(sae, TrainerConfig(epochs=3, batch_size=64, lr=3e-3, progress=False),
            callbacks=[UnitNormDecoder()]).fit(x)
    assert float(sae.compute_loss(x).loss.detach()) < before
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


def test_train_sae_accepts_iterables_and_stores():
    class Store:  # the ActivationStore interface: iter_batches(batch_size, shuffle, seed)
        def __init__(self, x):
            self.x = x

        def iter_batches(self, batch_size, shuffle=True, seed=0):
            perm = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(seed))
            for i in range(0, len(self.x), batch_size):
                yield self.x[perm[i:i + batch_size]]

    torch.manual_seed(0)
    x = torch.randn(256, 16)
    cfg = SAETrainConfig(steps=30, batch_size=64, lr=3e-3, warmup_steps=5, log_every=10)
    for source in (Store(x), [x[:128], x[128:]], x):
        hist = train_sae(_sae(), source, cfg)
        assert [h["step"] for h in hist] == [10, 20, 30]
        assert hist[-1]["recon"] < hist[0]["recon"] * 0.85  # measured 0.6-0.75 over seeds 0-3


def test_train_sae_streams_from_an_activation_store(tmp_path):
    from isthmus.interp.store import ActivationStore, StoreWriter

    torch.manual_seed(0)
    x = torch.randn(600, 16)
    with StoreWriter(tmp_path / "acts", dtype="float16", shard_rows=200, meta={"model": "test"}) as w:
        w.add(x)
    store = ActivationStore(tmp_path / "acts")
    sae = _sae()
    hist = train_sae(sae, store, SAETrainConfig(steps=40, batch_size=64, lr=3e-3, log_every=20))
    assert len(hist) == 2 and hist[-1]["recon"] < hist[0]["recon"] * 0.85  # measured 0.62-0.71, seeds 0-2
    assert sae.W_dec.dtype == torch.float32


def test_auxk_appears_only_with_dead_latents_and_resampling_revives_them():
    sae = _sae(bottleneck_config={"k": 4, "dead_steps": 2}).train()
    x = torch.randn(64, 16)
    assert "auxk" not in sae.compute_loss(x).losses
    sae.bottleneck.steps_since_fired[:10] = 5
    assert "auxk" in sae.compute_loss(x).losses
    sae.bottleneck.steps_since_fired[:10] = 5
    dead = sae.bottleneck.dead_mask().clone()
    opt = torch.optim.Adam(sae.parameters())
    sae.compute_loss(x).loss.backward()
    opt.step()
    n = resample_dead_latents(sae, x, opt, dead=dead)
    assert n == int(dead.sum()) >= 10
    assert not sae.bottleneck.dead_mask()[dead].any()
    torch.testing.assert_close(sae.W_dec[dead].norm(dim=1), torch.ones(n))
    assert (opt.state[sae.W_enc]["exp_avg"][dead] == 0).all()


def test_relu_l1_warmup_and_decoder_norm_weighting():
    bn = BOTTLENECKS.build("sae_relu", latent_dim=8, l1_coeff=1.0, l1_warmup_steps=10)
    h = torch.ones(2, 8)
    bn.set_step(4)
    assert float(bn(h).losses["l1"]) == pytest.approx(0.5 * 8)
    bn.set_step(100)
    assert float(bn(h, decoder_norm=torch.full((8,), 2.0)).losses["l1"]) == pytest.approx(16.0)


def test_jumprelu_threshold_learns_through_ste():
    bn = BOTTLENECKS.build("sae_jumprelu", latent_dim=6, threshold_init=0.5, bandwidth=0.4, l0_coeff=1.0)
    h = torch.full((10, 6), 0.55)  # within the kernel: the L0 term pushes θ up
    out = bn(h)
    assert torch.equal(out.latent, h)  # above threshold: passes unchanged
    out.losses["l0"].backward()
    assert (bn.log_threshold.grad < 0).all(), "lowering the L0 needs a larger threshold"
    assert torch.equal(bn(torch.full((2, 6), 0.3)).latent, torch.zeros(2, 6))


def test_topafa_k_adapts_to_input_norm():
    torch.manual_seed(0)
    bn = BOTTLENECKS.build("sae_topafa", latent_dim=64).eval()
    h = torch.rand(200, 64)
    norms = torch.linspace(0.2, 3.0, 200)
    out = bn(h, input_norm=norms)
    k = out.codes.float()
    assert torch.corrcoef(torch.stack([k, norms]))[0, 1] > 0.8
    f_norm = out.latent.norm(dim=1)
    assert ((f_norm - norms).abs() / norms).median() < 0.2


def test_matryoshka_adds_prefix_losses():
    sae = _sae(bottleneck="sae_matryoshka", bottleneck_config={"k": 4, "prefix_fractions": [0.25, 0.5, 1.0]})
    assert sae.bottleneck.nested_sizes == [16, 32, 64]
    out = sae.train().compute_loss(torch.randn(32, 16))
    assert set(out.losses) == {"recon", "matryoshka"}
