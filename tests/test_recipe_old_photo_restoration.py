"""Seed-2 recipe logic: augmentation, the data split (R unpaired, test photos held out), the floor."""

import numpy as np
import pytest

pytest.importorskip("skimage")

from isthmus.metrics.image import psnr  # noqa: E402
from isthmus.recipes.old_photo_restoration import OldPhotoRestoration, Settings, _augment, _tv_median, make_data  # noqa: E402


def test_augment_is_a_symmetry_of_each_crop():
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    y = _augment(x, np.random.default_rng(1))
    assert y.shape == x.shape
    for a, b in zip(x, y):
        assert np.array_equal(np.sort(a.ravel()), np.sort(b.ravel()))  # same pixels, moved
    assert not np.array_equal(x, y)


@pytest.mark.slow  # loads every bundled photo
def test_data_pairs_x_with_y_but_never_r():
    s = Settings(n_train=24, n_val=8, n_test=10)
    d = make_data(s, 0)
    assert d["x_tr"].shape == d["y_tr"].shape == d["r_tr"].shape == (24, 1, 32, 32)
    # X is a degraded copy of Y (close); R-train comes from other crops (far from every Y)
    assert psnr(d["y_tr"], d["x_tr"]).mean() > psnr(d["y_tr"], d["r_tr"]).mean() + 3
    assert d["y_te"].shape == (10, 1, 32, 32) and not np.array_equal(d["x_te"], d["r_te"])
    assert np.array_equal(make_data(s, 0)["r_te"], d["r_te"])  # seeded


def test_tv_median_floor_denoises():
    rng = np.random.default_rng(0)
    clean = np.full((4, 1, 16, 16), 0.5, np.float32)
    noisy = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    assert psnr(clean, _tv_median(noisy)).mean() > psnr(clean, noisy).mean() + 3


def test_declaration_has_one_headline_and_every_learned_arm_checked_for_convergence():
    r = OldPhotoRestoration()
    assert [g.name for g in r.gates if g.headline] == [r.gates[0].name] and r.gates[0].vs == "unet"
    conv = {p.arm for p in r.preconditions if p.metric == "converged"}
    assert conv == {"ours", "no_adversary", "unet", "dann_unet"}
    assert set(r.arms(r.modes["smoke"])) >= conv | {"identity", "tv_median"}
