"""The procedural multispectral scene generator (seed paper 3's ground-truth maps)."""

import numpy as np
import pytest

from isthmus.data.scenes import hapke_albedo_to_reflectance, hapke_reflectance_to_albedo, make_scene


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_cover_every_unit_and_shapes(seed):
    s = make_scene(size=48, n_units=6, n_bands=8, nonlinearity=0.5, seed=seed)
    assert s.bands.shape == (48, 48, 8) and s.bands.dtype == np.float32
    assert s.labels.shape == (48, 48)
    assert set(np.unique(s.labels)) == set(range(6))
    assert s.abundances.shape == (48, 48, 6)
    np.testing.assert_allclose(s.abundances.sum(-1), 1.0, atol=1e-5)
    assert (s.abundances >= 0).all()
    X, y = s.pixels()
    assert X.shape == (48 * 48, 8) and y.shape == (48 * 48,)


def test_own_unit_dominates_inside_cells():
    s = make_scene(size=64, seed=3)
    own = np.take_along_axis(s.abundances, s.labels[..., None], -1)[..., 0]
    assert np.median(own) > 0.5


def test_linear_control_is_exactly_a_linear_mix():
    s = make_scene(size=32, nonlinearity=0.0, seed=4)
    np.testing.assert_allclose(s.linear_mix, s.abundances @ s.endmembers, atol=1e-6)
    np.testing.assert_allclose(s.bands, s.linear_mix + s.noise, atol=1e-6)
    quiet = make_scene(size=32, nonlinearity=0.0, seed=4, noise_std=0.0)
    np.testing.assert_allclose(quiet.bands, quiet.abundances @ quiet.endmembers, atol=1e-6)


def test_nonlinearity_changes_only_the_physics():
    lin, nl = make_scene(size=32, nonlinearity=0.0, seed=5), make_scene(size=32, nonlinearity=1.0, seed=5)
    np.testing.assert_array_equal(lin.labels, nl.labels)
    np.testing.assert_array_equal(lin.abundances, nl.abundances)
    np.testing.assert_array_equal(lin.noise, nl.noise)
    resid = nl.bands - nl.noise - nl.linear_mix
    assert np.abs(resid).mean() > 0.02  # far from linear


def test_deterministic_by_seed():
    a, b, c = make_scene(size=32, seed=7), make_scene(size=32, seed=7), make_scene(size=32, seed=8)
    np.testing.assert_array_equal(a.bands, b.bands)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.bands, c.bands)


def test_hapke_inverse_roundtrip():
    w = np.linspace(0, 1, 101)
    np.testing.assert_allclose(hapke_reflectance_to_albedo(hapke_albedo_to_reflectance(w)), w, atol=1e-9)


@pytest.mark.parametrize("kw", [dict(size=4), dict(n_units=1), dict(nonlinearity=-1.0), dict(cover=0.6)])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        make_scene(**kw)
