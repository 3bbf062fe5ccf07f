"""Moving-shape clips (labels need order) and the LRCN encoder."""

import numpy as np
import pytest
import torch

from isthmus.data.videos import moving_shapes
from isthmus.models.lrcn import LRCN


def test_clips_are_seeded_and_motion_matches_the_label():
    a, ya = moving_shapes(40, seed=3)
    b, yb = moving_shapes(40, seed=3)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert a.shape == (40, 8, 1, 24, 24) and a.min() >= 0 and a.max() <= 1
    for clip, label in zip(a, ya):
        mass = [np.argwhere(f[0] > 0.5).mean(0) for f in clip]  # centre of the bright square per frame
        dr, dc = mass[-1] - mass[0]
        moved = {0: dc > 2, 1: dc < -2, 2: dr > 2, 3: dr < -2}[int(label)]
        assert moved, (label, dr, dc)


def test_lrcn_uses_order_and_single_frame_cannot():
    torch.manual_seed(0)
    clips = torch.rand(2, 5, 1, 24, 24)
    rev = clips.flip(1)
    single = LRCN(4, single_frame=True).eval()
    torch.testing.assert_close(single(clips), single(rev))  # a set of frames, order ignored
    lrcn = LRCN(4).eval()
    assert lrcn(clips).shape == (2, 4)
    assert not torch.allclose(lrcn(clips), lrcn(rev))
    with pytest.raises(ValueError, match="clips"):
        lrcn(torch.rand(2, 1, 24, 24))

