"""nerv-plus-plus: the pan video, the equal-parameter configs and the plateau measure."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.data.videos import pan_video
from isthmus.models.nerv import NeRV
from isthmus.recipes.nerv_plus_plus import NeRVPlusPlus, Settings, _config, _plateau_gain


def test_pan_video_is_seeded_moving_and_in_range():
    rng = np.random.default_rng(0)
    photo = rng.random((200, 260, 3)).astype(np.float32)
    a = pan_video(photo, frames=6, height=32, width=48, seed=1, downscale=2.0)
    b = pan_video(photo, frames=6, height=32, width=48, seed=1, downscale=2.0)
    assert a.shape == (6, 3, 32, 48) and np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert np.abs(a[1] - a[0]).mean() > 0  # the camera moves
    with pytest.raises(ValueError):
        pan_video(photo[:40], height=32, width=48)


def test_arms_have_parameters_within_three_percent():
    s = Settings()
    plus, nerv = NeRV(_config(s, "nerv++")), NeRV(_config(s, "nerv"))
    assert abs(plus.n_params() / nerv.n_params() - 1) <= 0.03
    assert plus.config.frame_size == (s.height, s.width) == nerv.config.frame_size


def test_plateau_gain_reads_the_last_fifth():
    assert _plateau_gain([10.0] * 16 + [11.0, 12.0, 13.0, 14.0, 15.0]) == pytest.approx(4.0)
    assert _plateau_gain([1.0, 2.0, 3.0, 3.0, 3.0, 3.05]) == pytest.approx(0.05)


def test_one_headline_gate_and_record_needs_five_videos():
    r = NeRVPlusPlus()
    assert sum(g.headline for g in r.gates) == 1
    assert r.modes["record"].seeds >= r.min_seeds == 5
