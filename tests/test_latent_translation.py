"""Gradient reversal, spatial VAE, latent mapping with frozen VAEs, domain probe, DANN restorer."""

import numpy as np
import pytest
import torch

from isthmus.metrics.probe import domain_probe_auroc
from isthmus.models.latent_translation import (
    LatentMapping, LatentMappingConfig, SpatialVAE, SpatialVAEConfig, translate,
)
from isthmus.nn.adversary import DomainCritic, domain_adversary_loss, grad_reverse
from isthmus.nn.unet import UNetConfig
from isthmus.tasks.restore import Restorer, RestorerConfig, fit_restorer
from isthmus.train import Trainer, TrainerConfig


def test_grad_reverse_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_encoder_step_raises_the_critics_loss():
    """Through the reversal, a gradient step on the features makes the critic's job harder."""
    torch.manual_seed(0)
    critic = DomainCritic(2, width=8)
    a = torch.randn(16, 2, 4, 4) + 1.0
    b = torch.randn(16, 2, 4, 4)
    feats = torch.nn.Parameter(torch.cat([a, b]))
    before = domain_adversary_loss(critic, feats[:16], feats[16:])
    before.backward()
    with torch.no_grad():
        feats -= 0.5 * feats.grad  # the step the encoder would take
        after = domain_adversary_loss(critic, feats[:16], feats[16:])
    assert after > before


def test_spatial_vae_shapes_kl_and_validation():
    vae = SpatialVAE(SpatialVAEConfig(widths=[4, 8], latent_channels=3))
    x = torch.rand(5, 1, 16, 16)
    z = vae.encode(x)
    assert z.shape == (5, 3, 4, 4) and vae(x).shape == x.shape
    out = vae.compute_loss(x)
    assert set(out.losses) == {"recon_l1", "kl"} and out.losses["kl"] > 0
    np.testing.assert_allclose(float(out.losses["kl"].detach()), float(z.detach().pow(2).mean()), rtol=1e-5)
    with pytest.raises(ValueError, match="two domains"):
        SpatialVAE(SpatialVAEConfig(widths=[4], adversary_weight=1.0)).compute_loss(x)
    with pytest.raises(ValueError, match="multiples of 4"):
        vae.encode(torch.rand(1, 1, 10, 16))
    adv = SpatialVAE(SpatialVAEConfig(widths=[4], latent_channels=2, adversary_weight=0.1))
    assert "adversary" in adv.compute_loss((x, torch.rand(3, 1, 16, 16))).losses  # unequal counts truncated


def test_mapping_trains_on_frozen_latents_and_leaves_the_vaes_alone(tmp_path):
    torch.manual_seed(0)
    v1, v2 = SpatialVAE(SpatialVAEConfig(widths=[4])), SpatialVAE(SpatialVAEConfig(widths=[4]))
    x = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    y = np.clip(x * 0.5 + 0.2, 0, 1)
    snap = [p.detach().clone() for p in list(v1.parameters()) + list(v2.parameters())]
    zx, zy = v1.encode_array(x), v2.encode_array(y)
    t = LatentMapping(LatentMappingConfig(latent_channels=8, width=8, blocks=1))
    first = float(t.compute_loss((torch.tensor(zx), torch.tensor(zy))).loss)
    Trainer(t, TrainerConfig(epochs=20, batch_size=16, lr=3e-3, progress=False)).fit((zx, zy))
    assert float(t.compute_loss((torch.tensor(zx), torch.tensor(zy))).loss) < 0.5 * first
    assert all(torch.equal(a, b) for a, b in zip(snap, list(v1.parameters()) + list(v2.parameters())))
    out = translate(v1, t, v2, x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    t.save_pretrained(tmp_path / "t")
    assert torch.equal(LatentMapping.from_pretrained(tmp_path / "t")(torch.tensor(zx)), t.eval()(torch.tensor(zx)))


def test_domain_probe_auroc():
    rng = np.random.default_rng(0)
    same = domain_probe_auroc(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)))
    apart = domain_probe_auroc(rng.normal(size=(200, 4)) + 3, rng.normal(size=(200, 4)))
    assert abs(same - 0.5) < 0.1 and apart > 0.99
    with pytest.raises(ValueError, match="same features"):
        domain_probe_auroc(np.zeros((10, 2)), np.zeros((10, 3)))


def test_dann_restorer_needs_and_uses_unpaired_images():
    cfg = RestorerConfig(unet=UNetConfig(1, 1, [4, 8]), domain_adversary=0.1)
    r = Restorer(cfg)
    x = torch.rand(4, 1, 8, 8)
    out = r.compute_loss((x, x, torch.rand(4, 1, 8, 8)))
    assert set(out.losses) == {"l1", "domain_adversary"}
    with pytest.raises(ValueError, match=r"\(x, y, r\)"):
        r.compute_loss((x, x))
    a = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="exactly when"):
        fit_restorer(a, a, cfg)
    fit = fit_restorer(a, a, cfg, TrainerConfig(epochs=1, batch_size=8, progress=False), val=(a, a), unpaired=a)
    assert np.isfinite(fit.val_loss).all()
