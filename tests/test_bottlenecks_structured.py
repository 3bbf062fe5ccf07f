"""Property tests for the structured continuous latents of issue 7.

ARD recovers the number of relevant dimensions; β-TCVAE's estimator sees correlation; the
importance-sampled likelihood matches a closed form; Matryoshka prefixes are valid embeddings;
Maestro's low-rank layer learns PCA in order and prunes for real; prototypes decode near data.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.linalg import subspace_angles

from isthmus.bottlenecks import ARDBottleneck, ARDConfig, GaussianBottleneck, GaussianConfig, build_bottleneck
from isthmus.bottlenecks.matryoshka import MatryoshkaConfig, prefix_mask
from isthmus.bottlenecks.tcvae import mws_log_densities
from isthmus.config import ConfigError
from isthmus.metrics.likelihood import importance_sampled_log_likelihood
from isthmus.models import AutoEncoder, MatryoshkaAutoEncoder, PrototypeClassifier
from isthmus.nn import LowRankLinear, LowRankLinearConfig, low_rank_losses, prune_low_rank
from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import ARDUpdate

torch.set_num_threads(1)


def _linear_gaussian(n: int, k: int, d: int = 12, noise: float = 0.05, seed: int = 0):
    """x = A s + noise with s ~ N(0, I_k): exactly k relevant directions."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, k, generator=g)
    return lambda m: torch.randn(m, k, generator=g) @ a.T + noise * torch.randn(m, d, generator=g)


def _spectrum_data(n: int = 4000, d: int = 16, seed: int = 0):
    """Zero-mean Gaussian data with a known decaying spectrum; returns (x, principal directions)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    scales = torch.tensor([2.0 * 0.8**i for i in range(d)])
    return (torch.randn(n, d, generator=g) * scales) @ q.T, q


def _fit(model, data, epochs, lr=1e-2, batch_size=64, callbacks=()):
    torch.manual_seed(0)
    cfg = TrainerConfig(epochs=epochs, batch_size=batch_size, lr=lr, progress=False, threads=1)
    return Trainer(model, cfg, callbacks=list(callbacks)).fit(data)


# ---- ARD ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 4])
def test_ard_recovers_the_number_of_relevant_dims(k):
    sample = _linear_gaussian(0, k)
    x, held = sample(2000), sample(500)
    torch.manual_seed(0)
    model = AutoEncoder.mlp(12, latent_dim=8, hidden=(), bottleneck="ard")
    _fit(model, x, epochs=15, callbacks=[ARDUpdate(held, subset_size=500)])
    model.eval()
    mu = model.bottleneck.posterior(model.encoder(held[:200]))[0]
    dims = model.bottleneck.relevant_dims(0.99, decoder=model.decoder, mu=mu)
    assert len(dims) == k, (dims, model.bottleneck.relevance(model.decoder, mu))
    assert int(model.bottleneck.prior_updates) == 16  # fit start + 15 epoch ends


def test_ard_prior_update_is_the_gamma_posterior_mean():
    bn = ARDBottleneck(ARDConfig(latent_dim=3, a0=1.0, b0=2.0, logvar_clamp=30.0))
    mu = torch.tensor([[1.0, 2.0, 0.0], [3.0, -2.0, 0.0]])
    h = torch.cat([mu, torch.full_like(mu, -30.0)], 1)  # σ ≈ 0: z̃ = μ
    var = bn.update_prior(h)
    expected = (2.0 + 0.5 * mu.pow(2).sum(0)) / (1.0 + 0.5 * 2)  # b / a
    torch.testing.assert_close(var, expected.clamp(min=1e-4), atol=1e-5, rtol=1e-5)


def test_ard_kl_reduces_to_standard_normal_at_unit_prior():
    h = torch.randn(5, 8)
    ard, gauss = ARDBottleneck(ARDConfig(latent_dim=4)).eval(), GaussianBottleneck(GaussianConfig(latent_dim=4)).eval()
    torch.testing.assert_close(ard(h).losses["kl"], gauss(h).losses["kl"])
    ard.prior_var.fill_(4.0)
    mu, logvar = ard.posterior(h)
    closed = 0.5 * (math.log(4.0) - logvar + (logvar.exp() + mu.pow(2)) / 4.0 - 1)
    torch.testing.assert_close(ard.kl_per_dim(mu, logvar), closed)


def test_ard_prior_survives_save_load(tmp_path):
    model = AutoEncoder.mlp(12, latent_dim=4, hidden=(8,), bottleneck="ard")
    model.bottleneck.prior_var.copy_(torch.tensor([0.5, 2.0, 3.0, 0.1]))
    model.save_pretrained(tmp_path / "m")
    loaded = AutoEncoder.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded.bottleneck.prior_var, model.bottleneck.prior_var)
    assert loaded.bottleneck.sample_prior(4000).var(0).argmax() == 2


def test_ard_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="relevance_threshold"):
        ARDConfig(relevance_threshold=0.0)
    with pytest.raises(ConfigError, match="min_prior_var"):
        ARDConfig(min_prior_var=0.0)


# ---- β-TCVAE ------------------------------------------------------------------------------------
def test_mws_total_correlation_sees_dependence():
    g = torch.Generator().manual_seed(0)
    m = 512
    indep = torch.randn(m, 2, generator=g)
    corr = torch.cat([indep[:, :1], indep[:, :1] + 0.1 * indep[:, 1:]], 1)
    logvar = torch.full((m, 2), math.log(0.05))

    def tc(mu):
        _, log_qz, log_qz_prod = mws_log_densities(mu, mu, logvar, dataset_size=m)
        return (log_qz - log_qz_prod).mean().item()

    assert tc(corr) > tc(indep) + 0.5


def test_tcvae_terms_telescope_to_the_sampled_kl():
    bn = build_bottleneck("tcvae", latent_dim=3, tc_weight=1.0).eval()
    h = torch.randn(64, 6)
    out = bn(h)
    mu, logvar = bn.posterior(h)
    log_qzx = mws_log_densities(mu, mu, logvar)[0]
    kl_sample = (log_qzx - bn.prior_log_prob(mu)).mean()
    torch.testing.assert_close(out.losses["mi"] + out.losses["tc"] + out.losses["dim_kl"], kl_sample)
    with pytest.raises(ConfigError, match="free_bits"):
        build_bottleneck("tcvae", free_bits=0.1)


# ---- importance-sampled likelihood --------------------------------------------------------------
def test_importance_sampled_ll_matches_linear_gaussian_marginal():
    sample = _linear_gaussian(0, 2, d=4, noise=0.5)
    x = sample(600)
    model = AutoEncoder.mlp(4, latent_dim=2, hidden=(), bottleneck="gaussian")
    _fit(model, x, epochs=15)
    w, b = model.decoder.net[0].weight.detach(), model.decoder.net[0].bias.detach()  # (4, 2), (4,)
    marginal = torch.distributions.MultivariateNormal(b, w @ w.T + 0.5 * torch.eye(4))  # obs var 0.5
    xs = x[:32]
    exact = marginal.log_prob(xs)
    gen = torch.Generator().manual_seed(1)
    est = importance_sampled_log_likelihood(model, xs, k=2000, generator=gen)
    elbo = importance_sampled_log_likelihood(model, xs, k=1, generator=gen)
    assert (est - exact).abs().mean() < 0.05, (est - exact)
    assert elbo.mean() < est.mean() + 1e-3  # the k=1 bound is looser


# ---- Matryoshka ---------------------------------------------------------------------------------
def _prefix_errors(model, x, sizes):
    return [float((model.reconstruct_prefix(x, k) - x).pow(2).sum(1).mean()) for k in sizes]


def _pca_errors(x_fit, x, sizes):
    """The optimum any rank-k reconstruction can reach on Gaussian data: PCA's residual."""
    mean = x_fit.mean(0)
    vecs = torch.linalg.svd(x_fit - mean, full_matrices=False).Vh  # (d, d) rows = directions
    out = []
    for k in sizes:
        proj = (x - mean) @ vecs[:k].T @ vecs[:k] + mean
        out.append(float((x - proj).pow(2).sum(1).mean()))
    return out


def test_matryoshka_prefixes_improve_monotonically():
    x, _ = _spectrum_data(2000, d=16)
    sizes = [1, 2, 4, 8]
    torch.manual_seed(0)
    nested = MatryoshkaAutoEncoder.mlp(16, latent_dim=8, hidden=(32,), matryoshka={"prefix_dims": [1, 2, 4]})
    _fit(nested, x, epochs=15, lr=5e-3, batch_size=128)
    errs = _prefix_errors(nested, x[:500], sizes)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    # Each short prefix is close to the best rank-k code (PCA), i.e. a valid size-k embedding ...
    for err, best in zip(errs[:3], _pca_errors(x, x[:500], sizes[:3])):
        assert err < 1.1 * best, (errs, best)
    # ... which a plain AE trained on the full latent only does not give.
    plain = MatryoshkaAutoEncoder.mlp(16, latent_dim=8, hidden=(32,), matryoshka={"prefix_dims": [8]})
    _fit(plain, x, epochs=15, lr=5e-3, batch_size=128)
    assert errs[0] < _prefix_errors(plain, x[:500], sizes)[0]


def test_matryoshka_config_validation_and_masking():
    with pytest.raises(ConfigError, match="prefix_dims"):
        MatryoshkaConfig(prefix_dims=[4, 2])
    with pytest.raises(ConfigError, match="prefix_weights"):
        MatryoshkaConfig(prefix_dims=[2], prefix_weights=[1.0, 1.0, 1.0]).sizes(8)
    z = torch.ones(2, 5)
    assert prefix_mask(z, 2).sum().item() == 4


def test_matryoshka_saves_its_nesting_and_refuses_the_wrong_loader(tmp_path):
    model = MatryoshkaAutoEncoder.mlp(12, latent_dim=4, hidden=(8,), matryoshka={"prefix_dims": [1, 3]})
    model.save_pretrained(tmp_path / "m")
    assert MatryoshkaAutoEncoder.from_pretrained(tmp_path / "m").sizes == [1, 3, 4]
    with pytest.raises(Exception, match="MatryoshkaAutoEncoder.from_pretrained"):
        AutoEncoder.from_pretrained(tmp_path / "m")


# ---- Maestro low-rank ---------------------------------------------------------------------------
def _train_linear_ae(x, ordered: bool, steps: int = 1200):
    torch.manual_seed(0)
    layer = LowRankLinear(LowRankLinearConfig(in_dim=16, out_dim=16, rank=8, bias=False,
                                              ordered_dropout=ordered, group_lasso=0.0))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(steps):
        xb = x[torch.randint(0, len(x), (128,))]
        loss = (layer(xb) - xb).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return layer


def test_low_rank_linear_ae_learns_pca_at_every_rank():
    x, _ = _spectrum_data()
    pcs = torch.linalg.svd(x - x.mean(0), full_matrices=False).Vh.T  # sample PCA directions (16, 16)
    lod, plain = _train_linear_ae(x, True), _train_linear_ae(x, False)

    def worst_angle(layer, b):
        return math.degrees(subspace_angles(layer.U.detach()[:, :b].numpy(), pcs[:, :b].numpy()).max())

    for b in (1, 2, 4, 8):
        assert worst_angle(lod, b) < 10.0, (b, worst_angle(lod, b))
    assert worst_angle(plain, 1) > 20.0  # without ordered dropout, prefixes are arbitrary


def test_group_lasso_and_prune_shrink_the_layer(tmp_path):
    layer = LowRankLinear(in_dim=6, out_dim=5, rank=4, group_lasso=0.1)
    tail = lambda t: sum(t[:, i:].norm() for i in range(4))  # noqa: E731
    torch.testing.assert_close(layer.losses()["group_lasso"], 0.1 * (tail(layer.V) + tail(layer.U)))
    with torch.no_grad():
        layer.U[:, 2:] = 0.0
    model = AutoEncoder(layer, build_bottleneck("identity", latent_dim=5), LowRankLinear(in_dim=5, out_dim=6))
    assert set(low_rank_losses(model)) == {"group_lasso"}
    before = layer.eval()(torch.ones(1, 6))
    assert prune_low_rank(model, tol=1e-5) == {"encoder": 2, "decoder": 5}
    assert layer.U.shape == (5, 2) and layer.V.shape == (6, 2) and layer.config.rank == 2
    torch.testing.assert_close(layer(torch.ones(1, 6)), before)
    model.save_pretrained(tmp_path / "m")
    assert AutoEncoder.from_pretrained(tmp_path / "m").encoder.rank == 2


def test_low_rank_from_linear_reproduces_the_dense_layer():
    dense = torch.nn.Linear(7, 5)
    lr = LowRankLinear.from_linear(dense).eval()
    x = torch.randn(3, 7)
    torch.testing.assert_close(lr(x), dense(x), atol=1e-5, rtol=1e-5)
    assert lr(x, rank=1).shape == (3, 5)
    with pytest.raises(ConfigError, match="rank"):
        LowRankLinearConfig(in_dim=3, out_dim=4, rank=5)


# ---- prototypes ---------------------------------------------------------------------------------
def _clusters(n=600, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(k, d, generator=g)
    y = torch.arange(n) % k
    return centers[y] + 0.5 * torch.randn(n, d, generator=g), y


def _r1_input_space(model, x):
    """Mean distance from each decoded prototype to its nearest training input."""
    protos = model.decode_prototypes()  # (m, F)
    return torch.cdist(protos, x).min(1).values.mean().item()


def test_prototype_classifier_trains_and_prototypes_decode_near_data():
    x, y = _clusters()
    kw = dict(latent_dim=4, hidden=(32,), n_prototypes=6, n_classes=3)
    torch.manual_seed(0)
    model = PrototypeClassifier.mlp(12, **kw)
    _fit(model, (x, y), epochs=30, lr=3e-3)
    assert (model.predict(x) == y).float().mean() > 0.95
    assert model.decode_prototypes().shape == (6, 12)
    assert model.prototype_distances(x[:5]).shape == (5, 6)
    torch.manual_seed(0)
    ablation = PrototypeClassifier.mlp(12, r1_weight=0.0, r2_weight=0.0, **kw)
    _fit(ablation, (x, y), epochs=30, lr=3e-3)
    # The regularisers are what keep prototypes on the data manifold (the paper's ablation).
    assert _r1_input_space(model, x) < 0.5 * _r1_input_space(ablation, x)


def test_prototype_classifier_needs_labels_and_a_prototype_bottleneck():
    model = PrototypeClassifier.mlp(12, latent_dim=4, hidden=(8,), n_prototypes=3, n_classes=2)
    with pytest.raises(ValueError, match="pairs"):
        model.compute_loss(torch.rand(4, 12))
    with pytest.raises(ConfigError, match="prototype"):
        PrototypeClassifier.mlp(12, latent_dim=4, hidden=(8,), bottleneck="gaussian")
