"""Property tests of the quantized bottlenecks (VQ, residual VQ, FSQ, scalar codebooks, key-value)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from isthmus.bottlenecks import (
    BOTTLENECKS,
    FSQBottleneck,
    FSQConfig,
    KeyValueBottleneck,
    KeyValueConfig,
    ScalarCodebooksBottleneck,
    ScalarCodebooksConfig,
    VectorQuantizer,
    VQBottleneck,
    VQConfig,
    codebook_stats,
)
from isthmus.config import ConfigError
from isthmus.models import AutoEncoder

QUANTIZED = {
    "vq": (dict(codebook_size=16, groups=2), 16),
    "residual_vq": (dict(codebook_size=16, n_quantizers=3), 16),
    "fsq": (dict(levels=[3, 4, 5, 2]), 3 * 4 * 5 * 2),
    "scalar_codebooks": (dict(n_values=7), 7),
    "key_value": (dict(heads=3, num_keys=5), 5),
}


def _h(n=64, d=4, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(QUANTIZED))
def test_codes_in_range_and_stats_present(name):
    kwargs, size = QUANTIZED[name]
    torch.manual_seed(0)
    bn = BOTTLENECKS.build(name, latent_dim=4, **kwargs)
    out = bn(_h())
    assert out.codes.dtype == torch.long
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < size
    for key in ("usage", "perplexity", "dead_codes", "bits_per_latent"):
        assert key in out.stats and torch.isfinite(torch.as_tensor(out.stats[key]))
    assert 0 < float(out.stats["usage"]) <= 1


@pytest.mark.parametrize("name", ["vq", "residual_vq", "fsq", "scalar_codebooks"])
def test_straight_through_gradient_reaches_encoder(name):
    kwargs, _ = QUANTIZED[name]
    torch.manual_seed(0)
    bn = BOTTLENECKS.build(name, latent_dim=4, **kwargs).train()
    h = _h().requires_grad_(True)
    bn(h).latent.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    if name != "fsq":  # pure straight-through: d latent / d h is the identity
        torch.testing.assert_close(h.grad, torch.ones_like(h))


def test_perplexity_of_uniform_usage_is_codebook_size():
    idx = torch.arange(8).repeat(5)  # every code used equally often
    s = codebook_stats(idx, 8)
    assert float(s["perplexity"]) == pytest.approx(8.0, rel=1e-5)
    assert float(s["usage"]) == 1.0 and float(s["dead_codes"]) == 0.0
    assert float(s["bits_per_latent"]) == pytest.approx(3.0, rel=1e-5)
    half = codebook_stats(torch.arange(4).repeat(5), 8)
    assert float(half["usage"]) == 0.5 and float(half["dead_codes"]) == 4.0
    assert float(half["perplexity"]) == pytest.approx(4.0, rel=1e-5)
    two = torch.stack([torch.arange(8), torch.zeros(8, dtype=torch.long)], 1)  # (8, 2): uniform, constant
    cols = codebook_stats(two, 8, separate_codebooks=True)
    assert float(cols["perplexity"]) == pytest.approx(4.5, rel=1e-5)  # mean of 8 and 1
    assert float(cols["bits_per_latent"]) == pytest.approx(3.0, rel=1e-5)


def test_ema_moves_code_toward_assigned_encodings():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, ema=True, decay=0.5, kmeans_init=False).train()
    target = torch.tensor([[3.0, -2.0]])
    z = target + 0.01 * torch.randn(32, 2)
    code = int(vq.nearest(z).mode().values)
    before = (vq.codebook[code] - target).norm()
    for _ in range(5):
        vq(z)
    after = (vq.codebook[code] - target).norm()
    assert after < 0.1 * before


def test_dead_code_reset_revives_unused_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, ema=True, kmeans_init=False, dead_code_steps=2).train()
    vq.codebook[3] = torch.tensor([1e3, 1e3])  # far from every encoding: never chosen
    vq.ema_sum[3] = vq.codebook[3] * vq.ema_size[3]
    z = torch.randn(32, 2)
    vq(z)
    assert vq.codebook[3].abs().max() > 100  # one step unused: not yet dead
    vq(z)
    assert vq.codebook[3].abs().max() < 10  # re-seeded from a batch encoding
    assert int(vq.unused_steps[3]) == 0


def test_kmeans_init_is_deterministic_and_round_trips(tmp_path):
    def run():
        torch.manual_seed(0)
        bn = VQBottleneck(VQConfig(latent_dim=4, codebook_size=8)).train()
        bn(_h())
        return bn

    a, b = run(), run()
    torch.testing.assert_close(a.quantizer.codebook, b.quantizer.codebook, rtol=0, atol=0)
    assert bool(a.quantizer.initialized)
    # k-means codes lie among the data, so usage after init is high
    assert float(a(_h()).stats["usage"]) >= 0.75
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.manual_seed(1)
    c = VQBottleneck(VQConfig(latent_dim=4, codebook_size=8))
    c.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    assert bool(c.quantizer.initialized)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(c.state_dict()[k], v, rtol=0, atol=0)


def test_residual_vq_more_quantizers_less_error():
    errs = []
    for n in (1, 4):
        torch.manual_seed(0)
        bn = BOTTLENECKS.build("residual_vq", latent_dim=4, codebook_size=8, n_quantizers=n).train()
        errs.append(float(bn(_h(256)).stats["quantization_error"]))
    assert errs[1] < 0.7 * errs[0]


def test_fsq_values_lie_on_the_level_grid():
    bn = FSQBottleneck(FSQConfig(latent_dim=4, levels=[3, 4, 5, 2]))
    out = bn(_h(200) * 3)
    for d in range(4):
        grid = bn.grid(d)
        dist = (out.latent[:, d, None] - grid[None]).abs().min(1).values
        assert dist.max() < 1e-6, f"dimension {d} left its grid {grid.tolist()}"
        assert len(torch.unique(out.latent[:, d])) == bn.config.per_dim_levels()[d]  # all levels reachable
    torch.testing.assert_close(bn.codes_to_latent(out.codes), out.latent)
    assert bn.codebook_size == 120 and float(out.stats["bits_capacity"]) == pytest.approx(math.log2(120), rel=1e-5)


def test_scalar_codebook_values_are_per_dimension():
    torch.manual_seed(0)
    bn = ScalarCodebooksBottleneck(ScalarCodebooksConfig(latent_dim=2, n_values=5, quantization_weight=1.0))
    assert bn.values.shape == (2, 5)
    torch.testing.assert_close(bn.values[0], torch.linspace(-0.5, 0.5, 5))
    opt = torch.optim.SGD(bn.parameters(), lr=0.5)
    h = torch.stack([torch.full((64,), 0.33), torch.full((64,), -0.1)], 1)  # each dimension its own target
    for _ in range(20):
        opt.zero_grad()
        sum(bn(h).losses.values()).backward()
        opt.step()
    assert not torch.allclose(bn.values[0], bn.values[1])
    out = bn(h)
    torch.testing.assert_close(out.latent[:, 0], torch.full((64,), 0.33), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.latent[:, 1], torch.full((64,), -0.1), atol=1e-3, rtol=0)
    for d in range(2):  # each latent takes a value from its own row
        assert torch.isin(out.latent[:, d], bn.codebook()[d]).all()
    shared = ScalarCodebooksBottleneck(ScalarCodebooksConfig(latent_dim=3, shared=True))
    assert shared.values.shape == (1, 10) and shared.codebook().shape == (3, 10)


def test_key_value_keys_stay_frozen_under_training():
    torch.manual_seed(0)
    model = AutoEncoder.mlp(6, latent_dim=4, hidden=(8,), bottleneck="key_value", heads=3, key_dim=2, num_keys=6)
    bn: KeyValueBottleneck = model.bottleneck
    x = torch.rand(32, 6)
    bn.init_keys(model.encoder(x).detach())
    keys, proj, values = bn.keys.clone(), bn.projection.clone(), bn.values.detach().clone()
    assert all(p is not bn.keys and p is not bn.projection for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        model(x).loss.backward()
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())
        opt.step()
    torch.testing.assert_close(bn.keys, keys, rtol=0, atol=0)
    torch.testing.assert_close(bn.projection, proj, rtol=0, atol=0)
    assert not torch.equal(bn.values.detach(), values)


def test_key_value_only_fetched_values_get_gradient():
    torch.manual_seed(0)
    bn = KeyValueBottleneck(KeyValueConfig(latent_dim=2, input_dim=3, heads=2, num_keys=8, init_on_first_batch=False))
    bn.init_keys(torch.randn(200, 3))
    h = torch.randn(4, 3)
    out = bn(h)
    out.latent.sum().backward()
    touched = bn.values.grad.abs().sum(-1) > 0  # (C, K)
    expected = torch.zeros(2, 8, dtype=torch.bool)
    expected[torch.arange(2)[None], out.codes] = True
    assert torch.equal(touched, expected)


def test_key_value_init_keys_fits_the_data():
    torch.manual_seed(0)
    bn = KeyValueBottleneck(KeyValueConfig(latent_dim=2, input_dim=3, heads=2, num_keys=4))
    x = torch.randn(300, 3)
    p = bn.project(x)  # (N, C, dk)
    err_before = torch.cdist(p.transpose(0, 1), bn.keys).min(-1).values.mean()
    bn.init_keys(x)
    err_after = torch.cdist(p.transpose(0, 1), bn.keys).min(-1).values.mean()
    assert bool(bn.keys_initialized) and err_after < err_before


@pytest.mark.parametrize(
    "cls, kwargs, field",
    [
        (VQConfig, dict(latent_dim=4, groups=3), "groups"),
        (VQConfig, dict(decay=1.0), "decay"),
        (FSQConfig, dict(latent_dim=4, levels=[3, 3]), "levels"),
        (FSQConfig, dict(levels=[1]), "levels"),
        (ScalarCodebooksConfig, dict(n_values=1), "n_values"),
        (KeyValueConfig, dict(latent_dim=5, heads=2, decoding="concat"), "decoding"),
    ],
)
def test_config_errors_name_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        cls(**kwargs)


def test_quantized_gaussian_snaps_mu_to_grid_with_straight_through_gradient():
    from isthmus.bottlenecks import build_bottleneck

    bn = build_bottleneck("quantized_gaussian", latent_dim=3, step=0.5).eval()
    h = torch.randn(6, 6, requires_grad=True)
    out = bn(h)
    assert torch.allclose(out.latent, out.codes.float() * 0.5)  # eval: the grid point nearest to μ
    assert torch.equal(out.codes, torch.round(h[:, :3].detach() / 0.5).long())
    out.latent.sum().backward()
    assert torch.equal(h.grad[:, :3], torch.ones(6, 3)) and torch.equal(h.grad[:, 3:], torch.zeros(6, 3))
    bn.train()
    assert "kl" in bn(torch.randn(6, 6)).losses


def test_jacobian_penalty_estimates_the_frobenius_norm():
    from isthmus.models import AutoEncoder

    torch.manual_seed(0)
    model = AutoEncoder.mlp(4, latent_dim=2, hidden=(), objective={"jacobian_weight": 1.0})  # linear encoder
    x = torch.rand(4000, 4)
    est = torch.stack([model(x).losses["jacobian"].detach() for _ in range(50)]).mean()
    with torch.no_grad():
        exact = model.encoder(torch.eye(4)) - model.encoder(torch.zeros(1, 4))  # rows = columns of W
    assert abs(float(est) - float(exact.pow(2).sum())) < 0.05 * float(exact.pow(2).sum())
    model.eval()
    assert "jacobian" not in model(x).losses  # training-only term
