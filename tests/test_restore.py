"""U-Net and the restorer: shapes, identity start, tiling = whole image, learning, save/load."""

import numpy as np
import pytest
import torch

from isthmus.config import ConfigError
from isthmus.nn.unet import UNet, UNetConfig, count_parameters
from isthmus.tasks.restore import Restorer, RestorerConfig, fit_restorer
from isthmus.train import TrainerConfig


def _random_restorer(channels=(8, 16), c=1, seed=0) -> Restorer:
    torch.manual_seed(seed)
    r = Restorer(RestorerConfig(unet=UNetConfig(c, c, list(channels))))
    for p in r.parameters():  # non-zero head so the net is not the identity
        torch.nn.init.normal_(p, std=0.2)
    return r.eval()


def test_unet_shapes_and_residual_identity_at_init():
    net = UNet(UNetConfig(3, 3, [8, 16, 32]))
    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(net(x), x)  # zero head: the residual U-Net starts as the identity
    skips, bottleneck = net.encode(x)
    assert bottleneck.shape == (2, 32, 4, 6) and [s.shape[1] for s in skips] == [8, 16]
    plain = UNet(UNetConfig(3, 2, [8, 16], residual=False))
    assert plain(x).shape == (2, 2, 16, 24)
    assert count_parameters(plain) == sum(p.numel() for p in plain.parameters())


def test_unet_refuses_bad_inputs():
    with pytest.raises(ValueError, match="multiples of 4"):
        UNet(UNetConfig(1, 1, [4, 8, 8]))(torch.rand(1, 1, 10, 12))
    with pytest.raises(ConfigError, match="in_channels"):
        UNetConfig(3, 1, residual=True)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        UNet(UNetConfig(1, 1, [4]))(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("shape", [(37, 53), (8, 8), (64, 20)])
def test_tiled_restore_equals_whole_image(shape):
    r = _random_restorer()
    img = np.random.default_rng(0).random(shape, dtype=np.float32)
    whole = r.restore(img)
    tiled = r.restore(img, tile=16)
    assert whole.shape == shape
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    assert not np.allclose(whole, img, atol=1e-3)  # the random net really changes the image


def test_restore_layouts_and_validation():
    r = _random_restorer(c=3)
    hwc = np.random.default_rng(1).random((20, 30, 3), dtype=np.float32)
    out = r.restore(hwc)
    assert out.shape == (20, 30, 3) and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(r.restore(hwc.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0), out, atol=1e-6)
    with pytest.raises(ValueError, match="3-channel"):
        r.restore(hwc[..., 0])
    with pytest.raises(ValueError, match="NaN"):
        r.restore(np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="multiple of 4"):
        _random_restorer(channels=(4, 8, 8), c=3).restore(hwc, tile=6)


def test_fit_learns_denoising_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    clean = np.repeat(np.repeat(rng.random((256, 1, 4, 4), dtype=np.float32), 4, 2), 4, 3)  # smooth-ish
    noisy = np.clip(clean + 0.15 * rng.standard_normal(clean.shape).astype(np.float32), 0, 1)
    tc = TrainerConfig(epochs=6, batch_size=32, lr=3e-3, progress=False, seed=0)
    fit = fit_restorer(noisy[:224], clean[:224], RestorerConfig(unet=UNetConfig(1, 1, [8, 16])), tc,
                       val=(noisy[224:], clean[224:]))
    assert len(fit.val_loss) == 6 and fit.val_loss[-1] < fit.val_loss[0]
    before = np.abs(noisy[224:] - clean[224:]).mean()
    after = np.abs(fit.model.restore(noisy[224:]) - clean[224:]).mean()
    assert after < 0.8 * before
    fit.model.save_pretrained(tmp_path / "r")
    back = Restorer.from_pretrained(tmp_path / "r")
    np.testing.assert_array_equal(back.restore(noisy[:4]), fit.model.restore(noisy[:4]))


def test_restorer_loss_checks_pairs():
    r = Restorer(RestorerConfig(unet=UNetConfig(1, 1, [4])))
    with pytest.raises(ValueError, match="pairs"):
        r.compute_loss(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        r.compute_loss((torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 4)))
