"""NeRV / NeRV++ blocks, coordinate-MLP parts, differentiable SSIM and the compression helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.models.nerv import NeRV, NeRVConfig, match_width
from isthmus.nn.compress import (
    bits_per_pixel, finalize_pruning, prune_global, quantize_tensor, quantize_weights, sparsity,
)
from isthmus.nn.inr import (
    CFCMLP, FiLMMLP, FourierFeatures, GatedCNNBlock, NeRVBlock, NeRVPlusBlock, coordinate_grid, grid_features,
    nerv_positional_encoding,
)
from isthmus.nn.ssim import ssim


def test_nerv_positional_encoding_matches_formula():
    t = torch.tensor([0.0, 0.3])
    pe = nerv_positional_encoding(t, base=1.25, levels=3)
    assert pe.shape == (2, 6)
    expected = []
    for i in range(3):
        a = 0.3 * 1.25 ** i * math.pi
        expected += [math.sin(a), math.cos(a)]
    assert torch.allclose(pe[1], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0] * 3))


def test_nerv_block_upsamples_by_pixel_shuffle():
    b = NeRVBlock(8, 5, stride=2)
    assert b(torch.randn(2, 8, 3, 4)).shape == (2, 5, 6, 8)


def test_nerv_plus_block_skip_is_bilinear_upsample_of_projection():
    torch.manual_seed(0)
    blk = NeRVPlusBlock(6, 4, stride=2)
    x = torch.randn(1, 6, 3, 4)
    out = blk(x)
    assert out.shape == (1, 4, 6, 8)
    # zeroing every residual branch's output leaves exactly the bilinear skip of the projection
    for m in (blk.up.conv, blk.gcnn.fc2, blk.rffn.ffn[-1]):
        torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)
    proj = blk.proj(x)
    up = torch.nn.functional.interpolate(proj, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(blk(x), up + torch.nn.functional.silu(torch.zeros(1)), atol=1e-6)
    noskip = NeRVPlusBlock(6, 4, stride=2, skip=False)
    assert noskip(x).shape == (1, 4, 6, 8)


def test_gated_cnn_with_zero_output_is_identity():
    g = GatedCNNBlock(4)
    torch.nn.init.zeros_(g.fc2.weight), torch.nn.init.zeros_(g.fc2.bias)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(g(x), x)


@pytest.mark.parametrize("block", ["nerv", "nerv++"])
def test_nerv_model_frames_and_save_load(block, tmp_path):
    m = NeRV(NeRVConfig(block=block, fc_h=2, fc_w=3, fc_dim=8, stem_dim=16, strides=(2, 2), lower_width=4))
    out = m(torch.tensor([0.0, 0.5]))
    assert out.shape == (2, 3, 8, 12) and m.config.frame_size == (8, 12)
    assert float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    m.save_pretrained(tmp_path / "m")
    m2 = NeRV.from_pretrained(tmp_path / "m")
    assert torch.equal(m2(torch.tensor([0.25])), m(torch.tensor([0.25])))


def test_match_width_hits_parameter_count():
    plus = NeRVConfig(block="nerv++", fc_dim=24, stem_dim=32, lower_width=8)
    target = NeRV(plus).n_params()
    nerv = match_width(plus.with_overrides({"block": "nerv"}), target)
    assert abs(NeRV(nerv).n_params() / target - 1) < 0.03


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 24, 20)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    ours = ssim(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ref = [structural_similarity(x, y, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False) for x, y in zip(a, b)]
    assert np.allclose(ours, ref, atol=1e-4)
    assert torch.allclose(ssim(torch.from_numpy(a), torch.from_numpy(a)), torch.ones(2), atol=1e-6)


def test_pruning_is_exact_and_masks_survive_finetuning():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 5))
    prune_global(m, 0.6)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(3):
        loss = m(torch.randn(4, 10)).pow(2).sum()
        opt.zero_grad(), loss.backward(), opt.step()
    finalize_pruning(m)
    assert sparsity(m) == pytest.approx(0.6, abs=1 / 300)
    quantize_weights(m, 8)
    assert sparsity(m) == pytest.approx(0.6, abs=1 / 300)  # quantisation keeps the zeros
    with pytest.raises(ValueError):
        prune_global(m, 1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 10), st.integers(0, 2 ** 16))
def test_quantize_error_is_at_most_half_a_step(bits, seed):
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    q = quantize_tensor(w, bits)
    step = (w.reshape(4, -1).max(1).values - w.reshape(4, -1).min(1).values) / (2 ** bits - 1)
    assert ((q - w).abs().reshape(4, -1).max(1).values <= step / 2 + 1e-6).all()
    assert all(len(torch.unique(q[i])) <= 2 ** bits for i in range(4))


def test_bits_per_pixel():
    assert bits_per_pixel(1000, 0.4, 8, 100) == pytest.approx(32.0)


def test_grid_features_exact_at_nodes_and_zero_film_is_base_mlp():
    grid = torch.randn(2, 5, 4, 6)
    c = coordinate_grid(4, 6)[None].expand(2, -1, -1)
    feats = grid_features(grid, c)
    assert torch.allclose(feats, grid.flatten(2).transpose(1, 2), atol=1e-6)
    torch.manual_seed(0)
    mlp = FiLMMLP(FourierFeatures(3).out_dim, 16, 2, 1)
    x = FourierFeatures(3)(c)
    base = mlp.out(torch.nn.functional.silu(mlp.layers[1](torch.nn.functional.silu(mlp.layers[0](x)))))
    assert torch.allclose(mlp(x, torch.zeros(2, mlp.n_shifts)), base, atol=1e-6)
    cfc = CFCMLP(5, 16, 3, 1)
    assert cfc([feats, feats, feats]).shape == (2, 24, 1)
    with pytest.raises(ValueError):
        cfc([feats])
