"""GANprintR parts: pool-index AE, re-synthesiser, EER, power spectrum, PSNR matching."""

import numpy as np
import pytest
import torch

from isthmus.metrics.detection import azimuthal_power_spectrum, eer
from isthmus.metrics.image import match_psnr, psnr
from isthmus.models.pool_autoencoder import PoolAEConfig, PoolIndexAutoencoder, Resynthesiser, ResynthesiserConfig


def test_unpooling_returns_each_maximum_to_its_position():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = 5.0
    x[0, 0, 3, 0] = 2.0
    pooled, idx = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
    back = torch.nn.functional.max_unpool2d(pooled, idx, 2, output_size=x.shape[-2:])
    assert torch.equal(back, x)  # the primitive the AE's decoder relies on


def test_pool_ae_shapes_ablation_and_validation():
    ae = PoolIndexAutoencoder(PoolAEConfig(widths=[4, 8, 8], code=4))
    x = torch.rand(2, 3, 16, 24)
    assert ae(x).shape == x.shape and torch.isfinite(ae.compute_loss(x).loss)
    plain = PoolIndexAutoencoder(PoolAEConfig(widths=[4, 8, 8], code=4, use_indices=False))
    plain.load_state_dict(ae.state_dict())  # same weights, same code: only the up-sampling differs
    assert not torch.allclose(plain(x), ae(x))
    with pytest.raises(ValueError, match="multiples of 8"):
        ae(torch.rand(1, 3, 12, 16))
    r = Resynthesiser(ResynthesiserConfig(widths=[4, 8, 8], code=4))
    assert r(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_eer_hand_computed():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert eer(y, np.arange(8.0)) == 0.0  # perfectly separated
    assert eer(y, -np.arange(8.0)) == 1.0  # perfectly inverted
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])  # one negative above one positive
    assert eer(y, s) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both classes"):
        eer(np.ones(4), np.arange(4.0))


def test_power_spectrum_flat_for_white_noise_and_peaks_for_a_checkerboard():
    rng = np.random.default_rng(0)
    spec = azimuthal_power_spectrum(rng.standard_normal((64, 32, 32))).mean(axis=0)
    assert spec[2:].std() < 0.15  # white noise: flat (in log power)
    board = np.indices((32, 32)).sum(axis=0) % 2 * 0.2 + 0.4
    img = np.clip(board + 0.01 * rng.standard_normal((4, 32, 32)), 0, 1)
    cb = azimuthal_power_spectrum(img).mean(axis=0)
    assert int(np.argmax(cb)) == len(cb) - 1  # the highest frequency carries the peak


def test_match_psnr_hits_the_target():
    rng = np.random.default_rng(0)
    x = rng.random((8, 1, 16, 16))
    noise = rng.standard_normal(x.shape)
    s = match_psnr(lambda im, k: im + k * noise, x, 25.0, 0.0, 0.5)
    assert abs(psnr(x, np.clip(x + s * noise, 0, 1)).mean() - 25.0) < 0.1
    with pytest.raises(ValueError, match="outside"):
        match_psnr(lambda im, k: im + k * noise, x, 5.0, 0.0, 0.01)
