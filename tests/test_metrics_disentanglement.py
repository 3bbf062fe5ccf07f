"""InfoMEC, MIG and DCI on synthetic ground truth: identity ≈ 1, random ≈ 0, invariances hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isthmus.metrics import dci, infomec, mig

N = 1000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    sources = np.stack([rng.integers(0, k, N) for k in (3, 6, 8)], 1)  # (N, 3) factor labels
    noisy = sources + 0.05 * rng.standard_normal(sources.shape)  # continuous identity code
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    rotated = ((sources - sources.mean(0)) / sources.std(0)) @ q  # explicit but entangled
    return {
        "sources": sources,
        "noisy": noisy,
        # permuted, rescaled (one sign flip), shifted, plus one dead latent
        "permuted": np.concatenate([noisy[:, [2, 0, 1]] * np.array([3.0, -0.5, 2.0]) + 7, np.zeros((N, 1))], 1),
        "random": rng.standard_normal((N, 3)),
        "rotated": rotated,
    }


def test_identity_code_scores_one(data):
    s = data["sources"]
    disc = infomec(s, s, discrete_latents=True)
    cont = infomec(s, data["noisy"])
    for r in (disc, cont):
        assert r["infom"] > 0.95 and r["infoc"] > 0.95 and r["infoe"] > 0.95
    assert mig(s, data["noisy"])["mig"] > 0.95
    d = dci(s, data["noisy"])
    assert min(d["disentanglement"], d["completeness"], d["informativeness"]) > 0.95


def test_permuted_scaled_code_still_scores_one(data):
    s = data["sources"]
    base, perm = infomec(s, data["noisy"]), infomec(s, data["permuted"])
    assert perm["active"].tolist() == [True, True, True, False]  # the constant latent is pruned
    for key in ("infom", "infoc", "infoe"):
        assert perm[key] == pytest.approx(base[key], abs=0.02)
    assert mig(s, data["permuted"])["mig"] > 0.95
    d = dci(s, data["permuted"])
    assert min(d["disentanglement"], d["completeness"], d["informativeness"]) > 0.95


def test_infomec_prunes_latents_with_a_twentieth_of_the_largest_range(data):
    # By the authors' definition InfoM/InfoC are not invariant to per-latent scale: a latent whose
    # range is < 1/20 of the largest counts as inactive (weight decay shrinks unused latents).
    z = data["noisy"] * np.array([1.0, 1.0, 40.0])
    assert infomec(data["sources"], z)["active"].tolist() == [False, False, True]


def test_random_code_scores_zero(data):
    s, z = data["sources"], data["random"]
    assert infomec(s, z)["infoe"] < 0.05
    assert mig(s, z)["mig"] < 0.05
    d = dci(s, z)
    assert max(d["disentanglement"], d["completeness"], d["informativeness"]) < 0.1


def test_rotated_code_is_explicit_but_not_modular(data):
    s = data["sources"]
    r = infomec(s, data["rotated"])
    assert r["infoe"] > 0.9  # a linear read-out still recovers every factor
    assert r["infom"] < 0.5 and r["infoc"] < 0.5
    assert mig(s, data["rotated"])["mig"] < 0.5
    assert dci(s, data["rotated"])["disentanglement"] < 0.5


def test_lasso_importance_on_linear_code(data):
    d = dci(data["sources"], data["permuted"], importance="lasso")
    assert d["importance"].shape == (4, 3)
    assert d["disentanglement"] > 0.95 and d["informativeness"] > 0.95


def test_accepts_tensors_and_validates_shapes(data):
    s = torch.as_tensor(data["sources"][:200])
    z = torch.as_tensor(data["noisy"][:200], dtype=torch.float32)
    assert mig(s, z)["mi"].shape == (3, 3)
    with pytest.raises(ValueError, match="sources and latents"):
        infomec(data["sources"], data["noisy"][:10])
    with pytest.raises(ValueError, match="importance"):
        dci(data["sources"], data["noisy"], importance="gbt")
    with pytest.raises(ValueError, match="at least 2 latents"):
        mig(data["sources"], data["noisy"][:, :1])
