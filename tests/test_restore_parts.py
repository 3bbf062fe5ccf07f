"""Photos split by photo, degradations (seeded, in range, each visibly degrading), PSNR/SSIM from scikit-image."""

import numpy as np
import pytest

pytest.importorskip("skimage")

from isthmus.data.degrade import FAMILIES, HELD_OUT_FAMILY, OLD_PHOTO, degrade  # noqa: E402
from isthmus.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, photo_patches  # noqa: E402
from isthmus.metrics.image import psnr, ssim  # noqa: E402


def test_train_and_test_photos_are_disjoint_and_patches_seeded():
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    a = photo_patches("train", 14, size=16, seed=1)
    assert a.shape == (14, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, photo_patches("train", 14, size=16, seed=1))
    g = photo_patches("test", 4, size=16, seed=0, gray=True)
    assert g.shape == (4, 1, 16, 16)


def test_every_degradation_is_seeded_in_range_and_lowers_quality():
    x = photo_patches("train", 6, size=32, seed=0)
    for name in FAMILIES:
        y = degrade(x, [name], seed=3)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1, name
        assert np.array_equal(y, degrade(x, [name], seed=3)), name
        assert psnr(x, y).mean() < 60, name  # it changed the images
    assert not set(OLD_PHOTO) & set(HELD_OUT_FAMILY)
    with pytest.raises(ValueError, match="unknown"):
        degrade(x, ["rain"])


def test_psnr_and_ssim_known_values():
    x = np.full((2, 1, 16, 16), 0.5)
    y = x + 0.1
    np.testing.assert_allclose(psnr(x, y), 20.0)  # 10 log10(1 / 0.01)
    assert np.allclose(ssim(x, x), 1.0)
    rng = np.random.default_rng(0)
    noisy = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    assert (ssim(x, noisy) < 0.5).all()
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, y[:, :, :8])


def test_family_b_is_disjoint_and_its_operations_behave():
    from isthmus.data.degrade import OLD_PHOTO_B, defocus, film_grain, vignette

    assert not set(OLD_PHOTO) & set(OLD_PHOTO_B) and set(OLD_PHOTO_B) <= set(FAMILIES)
    flat = np.full((2, 1, 24, 24), 0.4, np.float32)
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(defocus(flat, rng), flat, atol=1e-6)  # a normalised disk keeps flat regions
    assert (vignette(flat, rng) <= flat + 1e-7).all()  # vignetting only darkens
    g = film_grain(flat, rng)[0, 0] - 0.4
    lag1 = np.corrcoef(g[:, :-1].ravel(), g[:, 1:].ravel())[0, 1]
    assert lag1 > 0.3  # correlated grain, unlike the white `noise`
