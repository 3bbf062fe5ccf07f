"""The autoencoder score's parts (issue 22): per-feature noise model, latent-density term, trimmed
training, backward-compatible loading of detectors saved before them."""

import json

import numpy as np
import pytest
import torch

from isthmus.metrics import auroc
from isthmus.tasks.anomaly import AnomalyDetector

torch.set_num_threads(1)
FAST = dict(n_estimators=2, max_steps=300, random_state=0, distance_weight=0.0)


def manifold(n, seed=0, noise=(0.05,) * 6):
    rng = np.random.default_rng(seed)
    W = np.random.default_rng(123).normal(size=(2, 6))
    return rng.normal(size=(n, 2)) @ W + rng.normal(size=(n, 6)) * np.asarray(noise)


def test_latent_term_catches_extreme_rows_on_the_manifold():
    X = manifold(400)
    normal = manifold(100, seed=1)
    extreme = manifold(100, seed=2)
    extreme = extreme / np.linalg.norm(extreme, axis=1, keepdims=True) * 1.5 * np.linalg.norm(X, axis=1).mean()
    y = np.r_[np.zeros(100), np.ones(100)]
    T = np.r_[normal, extreme]
    recon_only = AnomalyDetector(latent_weight=0.0, **FAST).fit(X)
    with_latent = AnomalyDetector(latent_weight=1.0, **FAST).fit(X)
    # measured: 0.886 with the latent term, 0.766 without (the nets extrapolate along the plane)
    assert auroc(y, with_latent.score_samples(T)) > 0.85
    assert auroc(y, with_latent.score_samples(T)) > auroc(y, recon_only.score_samples(T)) + 0.05
    raw = with_latent.feature_contributions(T, normalize=False)
    np.testing.assert_allclose(raw.sum(1), with_latent.score_samples(T), rtol=1e-9)
    assert np.median(with_latent.train_scores_) == pytest.approx(2.0, rel=0.3)  # ~1 per term


def test_feature_noise_model_weighs_quiet_features_up():
    # feature 0 carries large independent noise; a shift of 0.3 on a quiet feature is a real anomaly
    noise = (1.0, 0.05, 0.05, 0.05, 0.05, 0.05)
    X = manifold(500, noise=noise)
    T = manifold(200, seed=3, noise=noise)
    T[100:, 3] += 0.3
    y = np.r_[np.zeros(100), np.ones(100)]
    feat = AnomalyDetector(noise="feature", latent_weight=0.0, **FAST).fit(X)
    member = AnomalyDetector(noise="member", latent_weight=0.0, **FAST).fit(X)
    # measured: 0.953 per-feature noise model vs 0.839 one scale per member
    assert auroc(y, feat.score_samples(T)) > 0.9
    assert auroc(y, feat.score_samples(T)) > auroc(y, member.score_samples(T)) + 0.05
    assert (feat.feature_contributions(T[100:]).argmax(1) == 3).mean() > 0.8
    with pytest.raises(ValueError, match="noise must be"):
        AnomalyDetector(noise="gauss").fit(X)


def test_trimmed_training_and_bad_trim():
    X = manifold(300)
    det = AnomalyDetector(trim=0.1, **FAST).fit(X)
    assert np.isfinite(det.score_samples(X)).all()
    with pytest.raises(ValueError, match="trim"):
        AnomalyDetector(trim=0.6).fit(X)


def test_folder_saved_before_issue_22_scores_like_the_old_detector(tmp_path):
    X = manifold(200)
    old = AnomalyDetector(noise="member", latent_weight=0.0, n_estimators=2, max_steps=100, random_state=0).fit(X)
    folder = old.save(tmp_path / "d")
    meta = json.loads((folder / "detector.json").read_text())
    for key in ("noise", "latent_weight", "trim"):  # the old format had none of these
        del meta["params"][key]
    del meta["latent_scale"]
    (folder / "detector.json").write_text(json.dumps(meta))
    from safetensors.numpy import load_file, save_file

    state = load_file(folder / "state.safetensors")
    save_file({k: v for k, v in state.items() if k in ("train_scores", "center")}, folder / "state.safetensors")
    back = AnomalyDetector.load(folder)
    assert back.noise == "member" and back.latent_weight == 0.0
    np.testing.assert_array_equal(back.score_samples(X), old.score_samples(X))
