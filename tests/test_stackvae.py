"""StackVAE-G model, graph learner, planted-group generator and the series detector."""

import numpy as np
import pytest
import torch

from isthmus.config import ConfigError
from isthmus.data.channel_groups import make_channel_groups
from isthmus.data.validation import DataError
from isthmus.models.stackvae import StackVAEG, StackVAEGConfig
from isthmus.nn.graph import GraphLearner, GraphLearnerConfig, mix_nodes
from isthmus.tasks.stackvae import StackVAEGDetector

torch.set_num_threads(1)


def _cfg(**kw):
    return StackVAEGConfig(**{**dict(n_channels=6, window=8, hidden=[16], latent_dim=3, embed_dim=4, k=2), **kw})


def test_graph_is_sparse_row_stochastic_with_self_loops():
    a = GraphLearner(GraphLearnerConfig(n_nodes=7, embed_dim=5, k=3))()
    torch.testing.assert_close(a.sum(1), torch.ones(7))
    assert ((a > 0).sum(1) <= 4).all() and (torch.diagonal(a) > 0).all()
    h = torch.randn(2, 7, 3)
    torch.testing.assert_close(mix_nodes(h, a, 0.0), h)
    torch.testing.assert_close(mix_nodes(h, torch.eye(7), 0.5), h)


def test_weights_shared_across_channels_and_losses_named():
    small, big = StackVAEG(_cfg(n_channels=4)), StackVAEG(_cfg(n_channels=40))
    n = lambda m: sum(p.numel() for n_, p in m.named_parameters() if not n_.startswith("graph."))  # noqa: E731
    assert n(small) == n(big)  # the stacked VAE does not grow with the channel count
    out = small(torch.randn(3, 8, 4))
    assert set(out.losses) == {"recon", "kl", "graph"} and out.recon.shape == (3, 8, 4)
    assert set(StackVAEG(_cfg(graph_weight=0.0))(torch.randn(3, 8, 6)).losses) == {"recon", "kl"}
    assert torch.equal(StackVAEG(_cfg(graph_weight=0.0)).adjacency(), torch.eye(6))


def test_bad_input_and_config_rejected():
    m = StackVAEG(_cfg())
    with pytest.raises(ValueError, match="window, channels"):
        m(torch.randn(3, 6, 8))
    x = torch.randn(2, 8, 6)
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m(x)
    with pytest.raises(ConfigError, match="graph_weight"):
        _cfg(graph_weight=1.5)


def test_save_load_round_trip(tmp_path):
    m = StackVAEG(_cfg()).eval()
    m.save_pretrained(tmp_path / "m")
    back = StackVAEG.from_pretrained(tmp_path / "m").eval()
    x = torch.randn(4, 8, 6)
    torch.testing.assert_close(m.channel_errors(x), back.channel_errors(x), rtol=0, atol=0)
    torch.testing.assert_close(m.adjacency(), back.adjacency())


def test_generator_plants_groups_and_labels_events():
    d = make_channel_groups(n_channels=12, n_groups=3, n_train=400, n_test=600, n_anomalies=5, seed=1)
    assert d.train.shape == (400, 12) and d.test.shape == (600, 12) and np.bincount(d.groups).tolist() == [4, 4, 4]
    corr = np.corrcoef(d.train.T)
    sg = d.same_group()
    assert corr[sg].mean() > 0.5 > np.abs(corr[~sg & ~np.eye(12, dtype=bool)]).mean()
    assert len(d.events) == 5 and d.test_labels.sum() == sum(b - a for a, b, _, _ in d.events)
    assert all(set(ch) <= set(np.flatnonzero(d.groups == d.groups[ch[0]])) for _, _, ch, _ in d.events)


@pytest.fixture(scope="module")
def fitted():
    d = make_channel_groups(n_channels=8, n_groups=2, n_train=400, n_test=500, n_anomalies=4, seed=0)
    det = StackVAEGDetector(window=10, stride=3, hidden=(16,), latent_dim=3, k=3, embed_dim=4, max_steps=40,
                            random_state=0).fit(d.train)
    return det, d


def test_detector_scores_steps_channels_and_predicts(fitted):
    det, d = fitted
    s, c = det.score_steps(d.test), det.channel_contributions(d.test)
    assert s.shape == (500,) and c.shape == (500, 8) and np.isfinite(s).all()
    np.testing.assert_allclose(c.sum(1), s)
    assert set(np.unique(det.predict_steps(d.test))) <= {0, 1}
    a = det.adjacency()
    np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-5)
    top = det.co_deviating(d.test, int(np.argmax(s)), top=3)
    assert top[0][0] == int(np.argmax(c[int(np.argmax(s))])) and len(top) <= 3


def test_streaming_equals_batch(fitted):
    det, d = fitted
    batch = det.score_steps(d.test[:40])
    st = det.stream()
    got = [st.update(r) for r in d.test[:40]]
    assert got[:9] == [None] * 9
    np.testing.assert_allclose(np.array(got[9:], dtype=float), batch[9:], rtol=1e-5)
    assert len(st.buffer) == det.window


def test_detector_errors_and_sklearn_rules(fitted):
    det, d = fitted
    with pytest.raises(DataError, match="channels"):
        det.score_steps(d.test[:, :5])
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    fresh = clone(det)
    assert fresh.get_params() == det.get_params() and not hasattr(fresh, "model_")
    with pytest.raises(NotFittedError):
        fresh.score_steps(d.test)


def test_fit_is_deterministic_per_random_state():
    x = make_channel_groups(n_channels=6, n_groups=2, n_train=200, n_test=300, n_anomalies=3,
                            anomaly_length=(10, 20), seed=2).train
    kw = dict(window=8, stride=4, hidden=(8,), latent_dim=2, k=2, embed_dim=4, max_steps=10, random_state=3)
    a, b = StackVAEGDetector(**kw).fit(x), StackVAEGDetector(**kw).fit(x)
    np.testing.assert_array_equal(a.score_steps(x), b.score_steps(x))


def test_graph_weights_follow_the_authors_formula():
    """W = ReLU(α·tanh(M Mᵀ)) (α outside, liwk16/StackVAE get_adjmat): weights reach α, not 1, and the
    embeddings keep a usable gradient at the paper's N(0, 1) init (α inside saturates the tanh)."""
    import torch

    from isthmus.nn.graph import GraphLearner, GraphLearnerConfig

    torch.manual_seed(0)
    g = GraphLearner(GraphLearnerConfig(n_nodes=12, embed_dim=30, k=3, alpha=3.0))
    m = torch.tanh(3.0 * g.proj(g.embedding))
    want = torch.relu(3.0 * torch.tanh(m @ m.T)) * (1 - torch.eye(12))
    assert torch.allclose(g.dense(), want)
    assert g.dense().max() > 1.5  # α scales the weights past tanh's ceiling of 1
    g.dense().sum().backward()
    assert g.embedding.grad.abs().mean() > 1e-4


def test_training_reconstructs_a_sample_of_the_output_gaussian_and_scoring_its_mean():
    """Authors' code (errata): MSE on x̂ = μ_x + σ_x·ε while training; μ_x at evaluation and scoring."""
    m = StackVAEG(_cfg(graph_weight=0.0))
    with torch.no_grad():
        [out for out in m.decoder.net if isinstance(out, torch.nn.Linear)][-1].bias[8:] = 6.0  # log σ_x² = 6
    x = torch.randn(16, 8, 6)
    torch.manual_seed(0)
    sampled = m.train()(x).losses["recon"]
    m.config.sample_output = False
    torch.manual_seed(0)
    mean_only = m(x).losses["recon"]
    assert sampled > 10 * mean_only  # E‖σ ε‖² = e^6 · w · C ≈ 19,000 per window
    m.config.sample_output = True
    a, b = m.eval()(x).recon, m(x).recon
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # evaluation: deterministic μ_x
