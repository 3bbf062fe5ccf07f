"""ladi-vton-emasc: the plateau measure, the paste-back arms and the declaration."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.recipes.ladi_vton_emasc import LadiVtonEmasc, _paste, _plateau


def test_plateau_is_relative_improvement_of_the_last_fifth():
    assert _plateau([2.0] * 10) == pytest.approx(0.0)
    assert _plateau([4.0] * 8 + [2.0, 2.0]) == pytest.approx(1.0)  # windows of 2: 4 -> 2


def test_paste_back_keeps_known_pixels_outside_and_the_decode_inside(monkeypatch):
    import isthmus.recipes.ladi_vton_emasc as r

    n, s = 2, 16
    rng = np.random.default_rng(0)
    src = rng.random((n, 3, s, s)).astype(np.float32)
    masks = np.zeros((n, 1, s, s), np.float32)
    masks[..., 4:10, 4:10] = 1
    decoded = np.full_like(src, 0.5)
    monkeypatch.setattr(r, "decode_with_skips", lambda *a, **k: decoded)
    seen = {}
    monkeypatch.setattr(r, "_scores", lambda out, d, outside=True: seen.setdefault("out", out) is None or {"x": 0.0})
    from isthmus.data.masks import mask_regions

    inside, outside, band = mask_regions(masks, 2)
    d = {"vae": None, "edited": src, "source": src, "masks": masks, "inside": inside, "outside": outside, "band": band}
    _paste(False)(None, 0, d)
    hard = seen.pop("out")
    assert np.array_equal(hard[:, :, 4:10, 4:10], decoded[:, :, 4:10, 4:10])
    assert np.array_equal(hard[:, :, :4], src[:, :, :4])
    _paste(True)(None, 0, d)
    soft = seen.pop("out")
    assert np.array_equal(soft[:, :, 4:10, 4:10], decoded[:, :, 4:10, 4:10])  # the ramp stays outside the mask
    assert not np.array_equal(soft[:, :, 3], src[:, :, 3])  # ... and blends next to it
    assert np.allclose(soft[:, :, 0, 0], src[:, :, 0, 0], atol=1e-3)


def test_declaration():
    r = LadiVtonEmasc()
    assert sum(g.headline for g in r.gates) == 1 and r.min_seeds == 5
    assert r.modes["record"].seeds >= 5


def test_leakage_precondition_names_a_control_that_can_leak():
    r = LadiVtonEmasc()
    p = next(p for p in r.preconditions if p.name == "leakage is detectable")
    assert p.arm == "leak_control" and p.arm in r.arms(r.modes["smoke"]) and p.op == ">=" and p.threshold == 0.5
    assert all(p.arm != "emasc_ungated" for p in r.preconditions)  # reads the masked image: nothing to leak
