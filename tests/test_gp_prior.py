"""GP prior over time (Fourier domain), the multi-modal GP-VAE and the MM-GPVAE simulation: properties with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isthmus.bottlenecks import GPPriorBottleneck, GPPriorConfig, build_bottleneck
from isthmus.bottlenecks.gp_prior import fourier_basis, rbf_covariance, rbf_spectral_density
from isthmus.data.gp_sim import make_mm_gp_sim, sample_gp
from isthmus.metrics.latent import affine_r2
from isthmus.models import MultimodalGPVAE


def _gp(n, T, ell, seed=0):
    return torch.from_numpy(sample_gp(n, T, ell, np.random.default_rng(seed))).float()


def test_full_fourier_basis_is_orthonormal():
    B, w = fourier_basis(9, 9, max_freq=10.0)
    assert B.shape == (9, 9) and w.shape == (9,)
    torch.testing.assert_close(B.T @ B, torch.eye(9), atol=1e-5, rtol=0)


def test_diagonal_fourier_prior_matches_the_rbf_kernel():
    """B diag(S(ω)) Bᵀ on a padded circle reproduces the RBF covariance on the first T steps."""
    T, ell = 40, 5.0
    B, w = fourier_basis(T, T + 40, max_freq=10.0)
    S = rbf_spectral_density(w, torch.tensor([ell]))[0]
    K_fourier = (B * S) @ B.T
    K = rbf_covariance(T, torch.tensor([ell]), jitter=0.0)[0]
    assert (K_fourier - K).abs().max() < 1e-3


def test_frequency_pruning_follows_min_lengthscale():
    short = GPPriorBottleneck(GPPriorConfig(latent_dim=1, min_lengthscale=2.0)).basis(60, torch.device("cpu"))[0]
    long = GPPriorBottleneck(GPPriorConfig(latent_dim=1, min_lengthscale=8.0)).basis(60, torch.device("cpu"))[0]
    assert long.shape[1] < short.shape[1]


def test_time_domain_kl_matches_torch_distributions():
    bn = GPPriorBottleneck(GPPriorConfig(latent_dim=2, domain="time", lengthscale=4.0, jitter=1e-2))
    mu, logvar = torch.randn(3, 12, 2), torch.randn(3, 12, 2) * 0.3 - 1
    kl = bn._time_kl(mu, logvar.exp(), logvar)  # (3, 2)
    K = rbf_covariance(12, bn.lengthscale.detach(), 1e-2)
    for b in range(3):
        for d in range(2):
            q = torch.distributions.MultivariateNormal(mu[b, :, d], torch.diag(logvar[b, :, d].exp()))
            p = torch.distributions.MultivariateNormal(torch.zeros(12), K[d])
            torch.testing.assert_close(kl[b, d], torch.distributions.kl_divergence(q, p), rtol=1e-4, atol=1e-4)


def test_time_exact_posterior_matches_gaussian_conditioning():
    """domain="time_exact": mean, marginal variance and KL equal the brute-force Gaussian posterior."""
    bn = GPPriorBottleneck(GPPriorConfig(latent_dim=2, domain="time_exact", lengthscale=4.0, jitter=1e-2)).eval()
    mu, logvar = torch.randn(3, 12, 2), torch.randn(3, 12, 2) * 0.3 - 1
    post = bn.infer(torch.cat([mu, logvar], -1))
    K = rbf_covariance(12, bn.lengthscale.detach(), 1e-2).double()
    for b in range(3):
        for d in range(2):
            W = torch.diag((-logvar[b, :, d]).exp()).double()
            S = torch.linalg.inv(torch.linalg.inv(K[d]) + W)
            m = S @ W @ mu[b, :, d].double()
            torch.testing.assert_close(post.mean[b, :, d].double(), m, rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(post.var[b, :, d].double(), S.diagonal(), rtol=1e-3, atol=1e-4)
            q = torch.distributions.MultivariateNormal(m, S)
            p = torch.distributions.MultivariateNormal(torch.zeros(12, dtype=torch.float64), K[d])
            torch.testing.assert_close(post.kl[b, d].double(), torch.distributions.kl_divergence(q, p),
                                       rtol=1e-3, atol=1e-3)
    bn.train()  # Matheron samples: their spread around the mean matches the posterior variance
    h = torch.cat([mu[:1], logvar[:1]], -1).expand(4000, 12, 4)
    draws = bn.infer(h).sample
    torch.testing.assert_close(draws.var(0), post.var[0], rtol=0.1, atol=0.01)
    torch.testing.assert_close(draws.mean(0), post.mean[0], rtol=0.1, atol=0.05)


def test_fourier_posterior_denoises_a_gp_trajectory():
    """Noisy per-step observations of a GP draw: the posterior mean is closer to the truth than the data."""
    T = 60
    truth = _gp(8, T, 10.0)  # (8, T)
    noisy = truth + 0.5 * torch.randn(8, T)
    bn = GPPriorBottleneck(GPPriorConfig(latent_dim=1, lengthscale=10.0)).eval()
    h = torch.stack([noisy, torch.full_like(noisy, math.log(0.25))], -1)  # (8, T, 2)
    mean = bn.infer(h).mean[..., 0]
    assert (mean - truth).pow(2).mean() < 0.4 * (noisy - truth).pow(2).mean()


def test_lengthscale_is_learned_from_the_elbo():
    """Maximising the ELBO of noisy observations of GP draws (ℓ = 5) moves ℓ from 15 towards 5."""
    truth = _gp(32, 40, 5.0, seed=1)
    y = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    h = torch.stack([y, torch.full_like(y, math.log(1e-2))], -1)  # (64, 50, 2): pseudo-obs = the data
    bn = GPPriorBottleneck(GPPriorConfig(latent_dim=1, lengthscale=15.0, min_lengthscale=2.5, pad=1.0))
    opt = torch.optim.Adam(bn.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        post = bn.infer(h)
        expected_nll = 0.5 * ((y[..., None] - post.mean).pow(2) + post.var).sum() / 1e-2 / y.numel()
        (bn(h).losses["kl"] + expected_nll).backward()
        opt.step()
    assert 3.5 < float(bn.lengthscale.detach()) < 7.5


def test_shape_contract_2d_is_one_trajectory_and_batches_are_independent():
    bn = build_bottleneck("gp_prior", latent_dim=3, lengthscale=4.0).eval()
    h = torch.randn(4, 20, 6)
    out = bn(h)
    assert out.latent.shape == (4, 20, 3) and out.losses["kl"].dim() == 0
    torch.testing.assert_close(bn(h[1]).latent, out.latent[1])  # (T, 2D) = one trajectory
    torch.testing.assert_close(bn.infer(h[2:3]).kl[0], bn.infer(h).kl[2])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 6\)"):
        bn(torch.randn(20, 5))


@pytest.mark.parametrize("domain", ["fourier", "time", "time_exact", "iid"])
def test_prior_draws_and_kl_are_sane(domain):
    bn = GPPriorBottleneck(GPPriorConfig(latent_dim=2, domain=domain, lengthscale=8.0))
    z = bn.sample_prior(200, generator=torch.Generator().manual_seed(0))
    assert z.shape == (200, 2)
    rough = (z[1:] - z[:-1]).pow(2).mean()
    assert (rough < 0.1) if domain != "iid" else (rough > 1.0)
    assert (bn.infer(torch.randn(3, 30, 4)).kl >= -1e-4).all()


def test_multimodal_model_encode_rates_and_save_load(tmp_path):
    model = MultimodalGPVAE({"image_dim": 16, "n_neurons": 5, "hidden": [8], "n_image": 2})
    images, spikes = torch.rand(2, 12, 4, 4), torch.poisson(torch.ones(2, 12, 5))
    z = model.encode(images, spikes)
    assert {k: tuple(v.shape) for k, v in z.items()} == {"shared": (2, 12, 1), "image": (2, 12, 2), "neural": (2, 12, 1)}
    assert model.predict_rates(images, spikes).shape == (2, 12, 5)
    out = model.eval().compute_loss((images, spikes))
    assert set(out.losses) == {"image", "spikes", "kl"} and out.recon.shape == (2, 12, 16)
    model.save_pretrained(tmp_path / "m")
    loaded = MultimodalGPVAE.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(loaded.compute_loss((images, spikes)).loss, out.loss, rtol=0, atol=0)
    image_only = MultimodalGPVAE({"image_dim": 16, "n_neurons": 5, "hidden": [8], "modalities": "image"})
    assert set(image_only.compute_loss((images, None)).losses) == {"image", "kl"}


def test_closed_form_poisson_expectation_matches_monte_carlo():
    model = MultimodalGPVAE({"image_dim": 16, "n_neurons": 5, "hidden": [8]})
    mean, var = torch.randn(1, 6, 3), torch.rand(1, 6, 3)
    eta_mu, eta_var = model.log_rate_moments(mean, var)
    z = mean + var.sqrt() * torch.randn(20000, 6, 3, generator=torch.Generator().manual_seed(0))
    W, b = model.spike_readout.weight, model.spike_readout.bias
    mc = torch.exp(z[..., [0, 2]] @ W.T + b).mean(0)
    torch.testing.assert_close(torch.exp(eta_mu + 0.5 * eta_var)[0], mc, rtol=0.05, atol=0.02)


def test_simulation_ground_truth():
    sim = make_mm_gp_sim(n_trials=5, T=30, image_size=12, n_neurons=10, seed=3, template=torch.rand(12, 12))
    assert sim.images.shape == (5, 30, 12, 12) and sim.spikes.shape == (5, 30, 10)
    assert set(sim.latents) == {"shared", "image", "neural"} and sim.latents["shared"].shape == (5, 30)
    assert torch.equal(sim.spikes, sim.spikes.round()) and (sim.spikes >= 0).all()
    # log-rates are an affine function of (shared, neural) only
    assert affine_r2(torch.stack([sim.latents["shared"], sim.latents["neural"]], -1).reshape(-1, 2),
                     sim.rates[..., 0].log().reshape(-1)) > 0.999
    again = make_mm_gp_sim(n_trials=5, T=30, image_size=12, n_neurons=10, seed=3, template=torch.rand(12, 12))
    assert torch.equal(again.spikes, sim.spikes)


def test_affine_r2():
    x = torch.randn(500, 2)
    assert affine_r2(x, -3 * x[:, 0] + 2 * x[:, 1] + 1) == pytest.approx(1.0)
    assert affine_r2(x[:, :1], torch.randn(500)) < 0.05
