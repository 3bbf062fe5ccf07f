"""Low-light synthesis, Retinex unfolding (closed-form steps when prox = 0), CUE priors and loss."""

import numpy as np
import pytest
import torch

from isthmus.data.lowlight import smooth_field, synthesize_low_light
from isthmus.models.cue import (
    CUEEnhancer, GradientPrior, IlluminationPriorAE, frozen_feature_loss, gradient_magnitude, total_variation,
    window_mask,
)
from isthmus.nn.unfolding import RetinexUnfolding, RetinexUnfoldingConfig, soft_threshold


def test_noise_free_low_light_inverts_exactly():
    gt = np.random.default_rng(0).random((5, 3, 8, 8), dtype=np.float32)
    p = synthesize_low_light(gt, seed=1, noise=False)
    back = (p.low / p.illumination) ** (1 / p.gamma[:, None, None, None])
    np.testing.assert_allclose(back, gt, atol=1e-4)
    assert (p.illumination >= 0.05 * 0.6 - 1e-6).all() and (p.illumination <= 0.2 + 1e-6).all()
    noisy = synthesize_low_light(gt, seed=1)
    assert noisy.low.min() >= 0 and noisy.low.max() <= 1 and not np.allclose(noisy.low, p.low)
    f = smooth_field(2, 16, 16, np.random.default_rng(0))
    assert np.isclose(f.min(), 0.6) and np.isclose(f.max(), 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        synthesize_low_light(gt * 2)


def test_soft_threshold():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    assert torch.allclose(soft_threshold(x, 0.5), torch.tensor([-1.5, 0.0, 0.0, 0.0, 1.0]))


@pytest.mark.parametrize("illumination", ["prox", "prior"])
def test_with_zero_corrections_the_updates_are_the_closed_form_steps(illumination):
    cfg = RetinexUnfoldingConfig(illumination=illumination, stages=3, alpha=0.01, beta=0.02, mu_init=4.0)
    net = RetinexUnfolding(cfg)
    for mod in (net.prox_r, net.prox_n, getattr(net, "prox_l", None)):
        if mod is not None:
            torch.nn.init.zeros_(mod.net[-1].weight), torch.nn.init.zeros_(mod.net[-1].bias)
    if illumination == "prior":
        net.illumination_correction = lambda l_hat: torch.zeros_like(l_hat)  # type: ignore[method-assign]
    img = torch.rand(2, 3, 8, 8) * 0.3
    R, L, N = net.decompose(img)
    # reference: the closed-form steps by hand
    l = img.amax(1, keepdim=True)
    r = img / (l + 1e-4)
    n = torch.zeros_like(img)
    for _ in range(2):
        l = ((1 - 0.01 * r ** 2) * l - 0.01 * r * (n - img)).mean(1, keepdim=True)
        r = (1 - 0.02 * l ** 2) * r - 0.02 * l * (n - img)
        resid = img - r * l
        n = torch.sign(resid) * torch.relu(resid.abs() - 0.25)
    for a, b in ((R, r), (L, l), (N, n)):
        torch.testing.assert_close(a, b)
    out = net(img)
    assert out.out.shape == img.shape and out.illumination_high.shape == (2, 1, 8, 8)


def test_window_mask_hides_the_asked_share():
    m = window_mask(3, 16, 16, 4, 0.5, np.random.default_rng(0))
    assert m.shape == (3, 1, 16, 16) and np.allclose(m.mean(axis=(1, 2, 3)), 0.5)
    assert set(np.unique(m[0, 0, :4, :4])) <= {0.0, 1.0} and len(np.unique(m[0, 0, :4, :4])) == 1  # whole windows
    with pytest.raises(ValueError, match="windows"):
        window_mask(1, 10, 16, 4, 0.5, np.random.default_rng(0))


def test_gradient_magnitude_tv_and_frozen_feature_loss():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(gradient_magnitude(flat), torch.zeros(1, 1, 8, 8), atol=1e-5)
    ramp = torch.arange(8.0).repeat(8, 1)[None, None].repeat(1, 3, 1, 1) / 8
    assert torch.allclose(gradient_magnitude(ramp)[..., 2:-2, 2:-2], torch.full((1, 1, 4, 4), 1 / 8), atol=1e-5)
    assert float(total_variation(flat)) == 0.0
    prior = GradientPrior(3, [4, 8])
    x, y = torch.rand(2, 3, 8, 8, requires_grad=True), torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="frozen"):
        frozen_feature_loss(prior, x, y)
    prior.requires_grad_(False)
    assert float(frozen_feature_loss(prior, y, y)) == 0.0
    frozen_feature_loss(prior, x, y).backward()
    assert x.grad is not None and all(p.grad is None for p in prior.parameters())


def test_cue_enhancer_loss_terms_and_frozen_prior():
    prior = GradientPrior(3, [4, 8])
    snap = [p.clone() for p in prior.parameters()]
    m = CUEEnhancer(RetinexUnfoldingConfig(width=4, prior_channels=[4, 8], enhance_channels=[4, 8]), prior)
    low, gt = torch.rand(4, 3, 8, 8) * 0.2, torch.rand(4, 3, 8, 8)
    out = m.compute_loss((low, gt))
    assert {"decomp_low", "output", "tv", "gradient_prior"} <= set(out.losses)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    out.loss.backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(snap, prior.parameters()))
    m.train()
    assert not prior.training  # the frozen prior stays in eval mode
    ae = IlluminationPriorAE([4, 8])
    keep = torch.ones(2, 1, 8, 8)
    keep[..., :4, :] = 0
    x = torch.rand(2, 1, 8, 8)
    loss = ae.compute_loss((x * keep, x, keep)).loss
    manual = ((ae(x * keep) - x).abs() * (1 - keep)).sum() / (1 - keep).sum()
    torch.testing.assert_close(loss, manual)
