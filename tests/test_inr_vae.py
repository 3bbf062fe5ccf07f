"""INR-VAE decoders (DDMI grid, FiLM modulation, conv) and their training helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isthmus.models.inr_vae import INRVAE
from isthmus.nn.inr import coordinate_grid
from isthmus.tasks.inr_vae import fit_inr_vae, fit_latent_prior, kl_schedule


def test_kl_schedule_is_ddmi_linear_warmup():
    assert kl_schedule(0, 100) == pytest.approx(1e-4)
    assert kl_schedule(45, 100) == pytest.approx(1e-4 + (0.5 - 1e-4) * 0.5)
    assert kl_schedule(90, 100) == pytest.approx(0.5) == kl_schedule(99, 100)


@pytest.mark.parametrize("decoder", ["grid", "film", "conv"])
def test_decode_at_pixel_centres_equals_the_image(decoder):
    torch.manual_seed(0)
    m = INRVAE(decoder=decoder, side=12, enc_width=8, dec_width=8, mlp_width=16, shift_hidden=8).eval()
    mu, logvar = m.encode_stats(torch.rand(2, 1, 12, 12))
    assert mu.shape == (2, 4, 3, 3) and logvar.shape == mu.shape
    img = m.decode_image(mu)
    pts = m.decode(mu, coordinate_grid(12, 12)[None].expand(2, -1, -1))
    assert img.shape == (2, 1, 12, 12)
    assert torch.allclose(pts.reshape(2, 1, 12, 12), img, atol=1e-6)
    if decoder != "conv":
        assert m.decode_image(mu, 20).shape == (2, 1, 20, 20)  # any resolution
    else:
        with pytest.raises(ValueError):
            m.decode_image(mu, 20)


def test_grid_decoder_emits_three_scales():
    m = INRVAE(decoder="grid", side=12, enc_width=8, dec_width=8, grid_dim=5)
    grids = m.grids(torch.zeros(1, 4, 3, 3))
    assert [tuple(g.shape) for g in grids] == [(1, 5, 3, 3), (1, 5, 6, 6), (1, 5, 12, 12)]


def test_stage1_and_stage2_run_and_learn():
    rng = np.random.default_rng(0)
    x = (rng.random((64, 1, 12, 12)) > 0.5).astype(np.float32)
    torch.manual_seed(0)
    m = INRVAE(decoder="grid", side=12, enc_width=8, dec_width=8, mlp_width=16)
    st = fit_inr_vae(m, x, x[:8], steps=30, batch_size=16, coords=32, kl_max=1e-4, log_points=3)
    assert len(st.val_psnr) == 3 and np.mean(st.loss[-5:]) < np.mean(st.loss[:5])
    prior = fit_latent_prior(m, x, steps=5, batch_size=16, width=16, depth=1)
    z = prior.sample(4, seed=1)
    assert z.shape == (4, 4, 3, 3) and torch.equal(z, prior.sample(4, seed=1))
