"""isthmus.data.lighting: the relighting model (Lit-MNIST, seed 21) and the photometric jitter baseline."""

import math

import numpy as np
import pytest
import torch

from isthmus.data.lighting import (
    FULL,
    NARROW,
    SHIFTED,
    Lighting,
    LightingRanges,
    digit_albedo,
    illumination_field,
    lighting_regressor,
    photometric_jitter,
    relight,
    sample_lighting,
)


def _light(n=1, a=1.0, theta=0.0, s=0.0, d=0.0, g=1.0, center=(0.0, 0.0)):
    f = lambda v: np.full(n, v, dtype=float)  # noqa: E731
    return Lighting(f(a), f(theta), f(s), f(d), np.tile(np.asarray(center, float), (n, 1)), f(g))


def test_neutral_lighting_returns_the_albedo():
    albedo = np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(relight(albedo, _light(3)), albedo, atol=1e-6)


def test_ambient_scales_and_gamma_applies():
    albedo = np.full((1, 1, 4, 4), 0.5, np.float32)
    np.testing.assert_allclose(relight(albedo, _light(a=0.5)), 0.25, atol=1e-6)
    np.testing.assert_allclose(relight(albedo, _light(g=2.0)), 0.25, atol=1e-6)


def test_ramp_spans_exactly_plus_minus_strength_and_points_along_theta():
    f = illumination_field(_light(s=0.5, theta=0.0), 16, 16)[0, 0]
    # theta = 0: brighter to the right (+u), constant along columns' height
    assert f[:, -1].mean() > f[:, 0].mean()
    np.testing.assert_allclose(f[:, 0], f[0, 0])
    np.testing.assert_allclose([f.min(), f.max()], [0.5, 1.5], atol=1e-6)
    g = illumination_field(_light(s=0.5, theta=math.pi / 4), 16, 16)[0, 0]
    np.testing.assert_allclose([g.min(), g.max()], [0.5, 1.5], atol=1e-6)  # corners reach the extremes
    assert g[-1, -1] > g[0, 0]  # +v is down the rows: pi/4 lights the bottom-right corner


def test_shadow_darkens_its_centre_most():
    f = illumination_field(_light(d=0.6, center=(0.0, 0.0)), 17, 17)[0, 0]
    assert f[8, 8] == pytest.approx(f.min()) and f.min() < 0.45 and f[0, 0] > 0.9


def test_sampled_ranges_are_respected_and_the_shifted_test_lies_inside_the_pool_outside_narrow():
    light = sample_lighting(500, SHIFTED, np.random.default_rng(0))
    assert light.ambient.min() >= 0.3 and light.ambient.max() <= 0.6
    assert light.strength.min() >= 0.5
    for name in ("ambient", "strength", "shadow", "gamma"):
        lo, hi = getattr(SHIFTED, name)
        assert getattr(FULL, name)[0] <= lo and hi <= getattr(FULL, name)[1]
    assert SHIFTED.ambient[1] < NARROW.ambient[0] and SHIFTED.strength[0] > NARROW.strength[1]


def test_bad_inputs_raise_with_a_message():
    with pytest.raises(ValueError, match="strength"):
        LightingRanges(strength=(0.0, 1.5))
    with pytest.raises(ValueError, match="lo <= hi"):
        LightingRanges(ambient=(0.9, 0.5))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        relight(np.full((1, 1, 2, 2), 2.0), _light())
    with pytest.raises(ValueError, match="lighting parameter sets"):
        relight(np.zeros((2, 1, 2, 2)), _light(3))


def test_digit_albedo_centres_the_digit_and_keeps_the_background():
    digits = np.zeros((1, 28, 28), np.float32)
    digits[0, 0, 0] = 1.0
    bg = np.full((1, 1, 32, 32), 0.2, np.float32)
    alb = digit_albedo(digits, bg, ink=0.9)
    assert alb[0, 0, 2, 2] == pytest.approx(0.9) and alb[0, 0, 0, 0] == pytest.approx(0.2)
    assert (alb == 0.2).sum() == 32 * 32 - 1


def test_photometric_jitter_is_global_seeded_and_in_range():
    x = torch.rand(6, 1, 8, 8)
    a = photometric_jitter(x, torch.Generator().manual_seed(1), shift=(0.0, 0.0), gamma=(1.0, 1.0))
    ratio = a / x.clamp_min(1e-6)
    # one scale per image: the ratio is constant within an image (no clipping with scale <= 1, shift 0)
    assert torch.allclose(ratio.flatten(1).std(1), torch.zeros(6), atol=1e-4)
    b = photometric_jitter(x, torch.Generator().manual_seed(1), shift=(0.0, 0.0), gamma=(1.0, 1.0))
    assert torch.equal(a, b)
    c = photometric_jitter(x, torch.Generator().manual_seed(2))
    assert c.min() >= 0 and c.max() <= 1 and not torch.equal(a, c)


def test_lighting_regressor_reads_held_out_lighting_and_its_direction():
    rng = np.random.default_rng(0)
    albedo = rng.uniform(0.2, 0.8, (300, 1, 8, 8)).astype(np.float32)
    light = sample_lighting(300, FULL, rng)
    x = relight(albedo, light)
    regress = lighting_regressor(x[:200], light.targets()[:200])
    pred, true = regress(x[200:]), light.targets()[200:]
    assert pred.shape == (100, 3)
    for o in range(3):  # ambient and both ramp components are read on images it was not fitted on
        assert np.corrcoef(pred[:, o], true[:, o])[0, 1] > 0.6  # 0.76, 0.91, 0.88 here
