"""EMASC skips, the skip-tapped VAE, masks and masked image metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isthmus.data.masks import blob_masks, mask_regions, paste_texture
from isthmus.metrics.image import gradient_error, region_psnr
from isthmus.models.skip_vae import SkipVAE
from isthmus.nn.emasc import MaskAwareSkip
from isthmus.tasks.emasc import decode_with_skips, train_skips, weights_hash


def _vae():
    torch.manual_seed(0)
    return SkipVAE(channels=(8, 8, 16, 16), groups=4).eval()


def test_taps_and_injection_points_have_declared_widths():
    vae = _vae()
    mu, logvar, taps = vae.encode_features(torch.rand(2, 3, 16, 16))
    assert mu.shape == (2, 4, 2, 2) and logvar.shape == mu.shape
    assert [t.shape[1] for t in taps] == vae.tap_channels()
    assert [t.shape[-1] for t in taps] == [16, 16, 8, 4, 2]
    skip = MaskAwareSkip(vae.tap_channels(), vae.skip_channels())
    out = vae.decode(mu, skip(taps, torch.zeros(2, 1, 16, 16)))
    assert out.shape == (2, 3, 16, 16)


def test_zero_init_linear_emasc_reproduces_the_plain_decode():
    vae = _vae()
    x = torch.rand(2, 3, 16, 16)
    mu, _, taps = vae.encode_features(x)
    skip = MaskAwareSkip(vae.tap_channels(), vae.skip_channels(), "linear")
    assert torch.equal(vae.decode(mu, skip(taps, torch.zeros(2, 1, 16, 16))), vae.decode(mu))


def test_full_mask_injects_nothing_and_ungated_does():
    vae = _vae()
    x = torch.rand(2, 3, 16, 16)
    mu, _, taps = vae.encode_features(x)
    full = torch.ones(2, 1, 16, 16)
    skip = MaskAwareSkip(vae.tap_channels(), vae.skip_channels(), "nonlinear")
    assert all(float(s.detach().abs().max()) == 0 for s in skip(taps, full))
    assert torch.allclose(vae.decode(mu, skip(taps, full)), vae.decode(mu))
    skip.gated = False
    assert not torch.allclose(vae.decode(mu, skip(taps, full)), vae.decode(mu))
    with pytest.raises(ValueError):
        MaskAwareSkip([8], [8, 8])


def test_training_skips_leaves_the_vae_unchanged():
    vae = _vae()
    h = weights_hash(vae)
    x = np.random.default_rng(0).random((8, 3, 16, 16)).astype(np.float32)
    m = blob_masks(8, 16, smooth=1.5, seed=0)
    skip = MaskAwareSkip(vae.tap_channels(), vae.skip_channels())
    before = [p.detach().clone() for p in skip.parameters()]
    fit = train_skips(vae, skip, x, m, steps=3, batch_size=4, seed=0)
    assert weights_hash(vae) == h and len(fit.loss_curve) == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, skip.parameters()))
    assert decode_with_skips(vae, skip, x, x, m).shape == x.shape


def test_blob_masks_cover_the_requested_fraction():
    m = blob_masks(20, 32, cover=(0.15, 0.35), seed=3)
    cov = m.reshape(20, -1).mean(1)
    assert m.shape == (20, 1, 32, 32) and ((cov >= 0.14) & (cov <= 0.36)).all()
    assert np.array_equal(m, blob_masks(20, 32, cover=(0.15, 0.35), seed=3))


def test_mask_regions_partition_the_image():
    m = np.zeros((1, 1, 12, 12), np.float32)
    m[..., 4:8, 4:8] = 1
    inside, outside, band = mask_regions(m, 1)
    assert (inside.astype(int) + outside + band == 1).all()
    assert inside.sum() == 4 and band.sum() == 6 * 6 - 4  # 2x2 core; band = 6x6 ring (square dilation)
    x = np.zeros((1, 3, 12, 12), np.float32)
    t = np.ones_like(x)
    assert np.array_equal(paste_texture(x, m, t)[0, 0], m[0, 0])


def test_region_psnr_and_gradient_error_on_known_errors():
    a = np.zeros((1, 3, 4, 4))
    b = a.copy()
    b[..., :2, :] = 0.1  # error 0.1 on the top half only
    top = np.zeros((1, 1, 4, 4), bool)
    top[..., :2, :] = True
    assert region_psnr(a, b, top)[0] == pytest.approx(20.0)
    assert np.isinf(region_psnr(a, b, ~top)[0])
    flat = b.copy()
    flat[:] = 0.1
    assert gradient_error(a, flat, np.ones((1, 1, 4, 4), bool))[0] == pytest.approx(0.0)
    # the step between rows 1 and 2 is the only gradient error: |−0.1| at row 1
    assert gradient_error(a, b, top)[0] == pytest.approx(0.1 * 4 / 8)


def test_unmasked_skip_input_carries_the_old_content_and_masked_does_not():
    """The leakage control's switch: ungated skips from the masked image do not depend on what was under
    the mask; from the unmasked image they do."""
    vae = _vae()
    rng = np.random.default_rng(1)
    a = rng.random((2, 3, 16, 16)).astype(np.float32)
    b = a.copy()
    m = np.zeros((2, 1, 16, 16), np.float32)
    m[..., 4:12, 4:12] = 1
    b[..., 4:12, 4:12] = rng.random((2, 3, 8, 8))  # different old content under the mask only
    torch.manual_seed(0)
    skip = MaskAwareSkip(vae.tap_channels(), vae.skip_channels(), gated=False)
    same = [decode_with_skips(vae, skip, a, src, m) for src in (a, b)]
    assert np.allclose(same[0], same[1])
    diff = [decode_with_skips(vae, skip, a, src, m, mask_input=False) for src in (a, b)]
    assert not np.allclose(diff[0], diff[1])


def test_validation_curve_is_deterministic_and_logged_every_k_steps():
    from isthmus.tasks.emasc import validation_loss

    vae = _vae()
    x = np.random.default_rng(0).random((8, 3, 16, 16)).astype(np.float32)
    m = blob_masks(8, 16, smooth=1.5, seed=0)
    skip = MaskAwareSkip(vae.tap_channels(), vae.skip_channels())
    fit = train_skips(vae, skip, x, m, steps=6, batch_size=4, val=(x[:4], m[:4]), eval_every=3)
    assert len(fit.val_curve) == 3 and len(fit.loss_curve) == 6  # before training, after 3 and 6 steps
    vx, vm = torch.as_tensor(x[:4]), torch.as_tensor(m[:4])
    assert validation_loss(vae, skip, vx, vm) == validation_loss(vae, skip, vx, vm) == pytest.approx(fit.val_curve[-1])
    with pytest.raises(ValueError, match="eval_every"):
        train_skips(vae, skip, x, m, steps=1, eval_every=0)


def test_lr_factor_warms_up_then_holds_or_decays_to_zero():
    from isthmus.tasks.emasc import lr_factor

    assert [lr_factor(k, 100, 4) for k in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(99, 100, 4) == 1.0
    assert lr_factor(4, 100, 4, "cosine") == 1.0 and lr_factor(52, 100, 4, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 4, "cosine") == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        train_skips(_vae(), None, np.zeros((1, 3, 16, 16), np.float32), np.zeros((1, 1, 16, 16)), 1, schedule="x")
