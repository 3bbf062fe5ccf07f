"""Offline built-ins: scikit-learn digits and the procedural shapes generator's factor semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from isthmus.config import ConfigError
from isthmus.data import FACTOR_NAMES, ShapesConfig, load_digits, make_shapes, render_shapes, shapes_from_config


def test_load_digits_scaled_and_shaped():
    t = load_digits()
    assert t.X.shape == (1797, 64) and t.X.dtype == np.float32
    assert t.X.min() == 0.0 and t.X.max() == 1.0              # 0..16 counts divided by 16
    assert np.bincount(t.y).min() >= 170 and t.meta["image_shape"] == (8, 8)
    img = load_digits(as_images=True)
    assert img.X.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(img.X.reshape(1797, 64), t.X)


# ---- shapes: structure ---------------------------------------------------------------------------
def test_shapes_table_structure_and_determinism():
    t = make_shapes(n=300, image_size=24, seed=3)
    assert t.X.shape == (300, 1, 24, 24) and t.X.dtype == np.float32
    assert set(np.unique(t.X)) <= {0.0, 1.0}                   # binary without anti-aliasing
    f = t.meta["factors"]
    assert f.shape == (300, 5) and t.meta["factor_names"] == list(FACTOR_NAMES)
    assert t.meta["varying"] == list(FACTOR_NAMES) and t.meta["classes"] == ["square", "ellipse", "heart"]
    assert t.y.tolist() == f[:, 0].astype(int).tolist()
    for j, name in enumerate(FACTOR_NAMES):                   # every factor value lies on its grid
        grid = np.array(t.meta["factor_values"][name])
        np.testing.assert_allclose(grid[t.meta["factor_indices"][:, j]], f[:, j])
    assert len(t.meta["factor_values"]["rotation"]) == 40 and len(t.meta["factor_values"]["x"]) == 32
    again = make_shapes(n=300, image_size=24, seed=3)
    np.testing.assert_array_equal(again.X, t.X)
    assert not np.array_equal(make_shapes(n=300, image_size=24, seed=4).X, t.X)
    rebuilt = shapes_from_config(ShapesConfig.from_dict(t.meta["config"]))   # config is the recipe
    np.testing.assert_array_equal(rebuilt.X, t.X)
    assert (t.X.reshape(300, -1).sum(1) > 0).all()             # no empty images


def test_antialias_gives_partial_coverage_with_same_area():
    hard = make_shapes(n=50, image_size=32, seed=0)
    soft = make_shapes(n=50, image_size=32, seed=0, antialias=True)
    assert ((soft.X > 0) & (soft.X < 1)).any()
    area_h, area_s = hard.X.sum((1, 2, 3)), soft.X.sum((1, 2, 3))
    assert np.abs(area_h - area_s).max() < 0.15 * area_s.max()


# ---- shapes: factor semantics --------------------------------------------------------------------
def _centroids(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = X[:, 0]
    rows, cols = np.indices(m.shape[1:])
    mass = m.sum((1, 2))
    return (m * cols).sum((1, 2)) / mass, (m * rows).sum((1, 2)) / mass


def test_mask_centroid_tracks_x_and_y():
    t = make_shapes(n=400, image_size=32, seed=1, shapes=("square", "ellipse"), antialias=True)
    cx, cy = _centroids(t.X)
    x, y = t.meta["factors"][:, 3], t.meta["factors"][:, 4]
    r_max = 0.25 * 32 * 1.0
    span = 32 - 2 * r_max
    # point-symmetric shapes: the centroid is the centre, x=0 → r_max-0.5 ... x=1 → 31.5-r_max
    np.testing.assert_allclose(cx, r_max - 0.5 + x * span, atol=0.25)
    np.testing.assert_allclose(cy, r_max - 0.5 + y * span, atol=0.25)   # y grows downwards (rows)
    hearts = make_shapes(n=300, seed=2, shapes=("heart",), fixed={"rotation": 0.0})
    hx, _ = _centroids(hearts.X)
    assert np.corrcoef(hx, hearts.meta["factors"][:, 3])[0, 1] > 0.99


def test_scale_grows_area_monotonically_and_quadratically():
    scales = np.linspace(0.5, 1.0, 6)
    for k in range(4):
        f = np.stack([np.full(6, k), scales, np.zeros(6), np.full(6, 0.5), np.full(6, 0.5)], axis=1)
        area = render_shapes(f, 48, ("square", "ellipse", "heart", "triangle"), antialias=True).sum((1, 2, 3))
        assert (np.diff(area) > 0).all()
        assert area[-1] / area[0] == pytest.approx(4.0, rel=0.1)      # area ∝ scale²


def test_rotation_semantics():
    def one(shape: int, rot: float) -> np.ndarray:
        return render_shapes(np.array([[shape, 1.0, rot, 0.5, 0.5]]), 33, ("square", "ellipse"))[0, 0]

    def diff(a: np.ndarray, b: np.ndarray) -> float:  # mismatched pixels as a fraction of the shape
        return float((a != b).sum() / a.sum())

    assert diff(one(1, math.pi / 2), one(1, 0.0).T) < 0.03         # ellipse turned 90° = transpose
    assert diff(one(0, math.pi / 2), one(0, 0.0)) < 0.03           # square: 90° symmetric
    assert diff(one(0, math.pi / 4), one(0, 0.0)) > 0.2            # ...but 45° differs
    assert diff(one(1, math.pi / 4), one(1, 0.0)) > 0.2
    # counter-clockwise: the ellipse's long axis turned by +45° runs from bottom-left to top-right
    e = one(1, math.pi / 4)
    assert e[12, 20] == 1 and e[12, 12] == 0                       # row 12 lies above the centre (16)


def test_shapes_stay_inside_the_frame_at_extreme_positions():
    corners = [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    f = np.array([[0, 1.0, math.pi / 4, x, y] for x, y in corners] + [[0, 1.0, math.pi / 4, 0.5, 0.5]])
    area = render_shapes(f, 40, ("square",), antialias=True).sum((1, 2, 3))
    np.testing.assert_allclose(area[:3], area[3], rtol=0.03)          # nothing clipped at the edges


def test_fixed_and_vary_choose_the_varying_factors():
    t = make_shapes(n=200, seed=0, vary=["x", "y"])
    f = t.meta["factors"]
    assert t.meta["varying"] == ["x", "y"]
    assert np.ptp(f[:, :3], axis=0).tolist() == [0.0, 0.0, 0.0]   # shape, scale, rotation constant
    assert f[0, 1] == 1.0 and f[0, 2] == 0.0 and np.unique(f[:, 3]).size > 10
    t2 = make_shapes(n=200, seed=0, shapes=("square", "ellipse", "heart"),
                     fixed={"rotation": 0.0, "shape": "heart", "scale": 0.75}, n_values={"x": 4})
    f2 = t2.meta["factors"]
    assert t2.meta["varying"] == ["x", "y"] and set(t2.y) == {2}
    assert (f2[:, 1] == 0.75).all() and (f2[:, 2] == 0.0).all() and np.unique(f2[:, 3]).size == 4
    assert make_shapes(n=10, image_size=7).X.shape == (10, 1, 7, 7)   # any image size
    assert make_shapes(n=10, image_size=64).X.shape == (10, 1, 64, 64)


@pytest.mark.parametrize("kwargs, match", [
    ({"vary": ["colour"]}, "unknown factor 'colour'"),
    ({"vary": ["x"], "fixed": {"x": 0.2}}, "both in vary and fixed"),
    ({"shapes": ("square", "star")}, "distinct names"),
    ({"fixed": {"shape": "triangle"}}, "not in shapes"),
    ({"fixed": {"x": 1.5}}, r"must lie in \[0, 1\]"),
    ({"scale_range": (0.5, 3.0)}, "inside the image"),
])
def test_shapes_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_shapes(n=5, **kwargs)
