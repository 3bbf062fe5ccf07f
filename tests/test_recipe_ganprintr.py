"""Seed-20 recipe logic: matched-PSNR transforms degrade monotonically; D2 augmentation; down-up."""

import numpy as np

from isthmus.metrics.image import psnr
from isthmus.recipes.ganprintr import GANprintR, augment, down_up, matched_transforms


def test_every_matched_transform_degrades_more_with_strength_and_is_seeded():
    x = np.random.default_rng(0).random((4, 3, 16, 16)).astype(np.float32)
    for name, (fn, lo, hi) in matched_transforms(3).items():
        mid = lo + 0.3 * (hi - lo)
        p = [psnr(x, np.clip(fn(x, s), 0, 1)).mean() for s in (mid, hi)]
        assert p[0] > p[1], name
        assert np.array_equal(fn(x, mid), matched_transforms(3)[name][0](x, mid)), name


def test_down_up_keeps_flat_images_and_augment_touches_about_half():
    flat = np.full((2, 3, 8, 8), 0.3, np.float32)
    np.testing.assert_allclose(down_up(flat), flat, atol=1e-6)
    x = np.random.default_rng(0).random((200, 3, 8, 8)).astype(np.float32)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(x, augment(x, np.random.default_rng(1)))])
    assert 0.35 < changed.mean() < 0.65


def test_declaration_needs_four_seeds_and_one_headline():
    r = GANprintR()
    assert r.min_seeds == 4 and [g.vs for g in r.gates if g.headline] == ["raw"]
