"""Recipe stackvae-g (seed 13): point-adjust, graph recovery and last-step scoring.
(The shared parametrized smoke test runs the recipe end to end.)"""

import numpy as np

from isthmus.recipes.stackvae_g import Settings, _classic, _lift, adjacency_recovery


def test_point_adjust_lift_and_recovery():
    y = np.array([0, 1, 1, 0, 1])
    np.testing.assert_array_equal(_lift(y, np.array([0.1, 0.2, 0.9, 0.3, 0.4])), [0.1, 0.9, 0.9, 0.3, 0.4])
    sg = np.kron(np.eye(2), np.ones((2, 2))).astype(bool) & ~np.eye(4, dtype=bool)
    r = adjacency_recovery(sg.astype(float), sg.astype(float), sg)
    assert r == {"edge_auroc": 1.0, "topk_precision": 1.0}
    assert adjacency_recovery(-sg.astype(float), sg.astype(float) * 0, sg)["edge_auroc"] == 0.0


def test_pca_scores_the_last_step_like_the_neural_arms():
    """A spike at step t raises PCA's score of step t (the window ending there) and of no later step that
    only carries it inside its window: the score is the last step's error, not the window's."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 1)) * np.ones((1, 4))  # four copies of one signal: rank 1
    tr = base + 0.01 * rng.normal(size=base.shape)
    te = tr[:60].copy()
    te[30, 0] += 5.0  # breaks the correlation at one step only
    s = Settings(window=8, stride=1)
    score, contrib = _classic("pca", s, tr, te, seed=0)
    assert score.shape == (60,) and contrib.shape == (60, 4)
    assert np.argmax(score) == 30
    assert score[31:38].max() < 0.1 * score[30]  # later windows still contain the spike, but not as last step
    np.testing.assert_allclose(score, contrib.sum(1))


def test_parameter_ratio_is_structural():
    """The dense VAE over w·C inputs always outweighs the shared per-channel model (a check, not a gate)."""
    from isthmus.tasks.stackvae import StackVAEGDetector

    rng = np.random.default_rng(0)
    det = StackVAEGDetector(window=12, stride=4, hidden=(16, 16), latent_dim=3, k=3, embed_dim=8, max_steps=2,
                            random_state=0).fit(rng.normal(size=(200, 12)).astype(np.float32))
    dense_first_layer = 12 * 12 * 32
    assert det.n_params_ < dense_first_layer
    assert len(det.history_) >= 1 and "train_loss" in det.history_[0]
