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


def test_moving_digits_are_seeded_balanced_and_one_frame_hides_the_direction():
    from isthmus.data.videos import MOTIONS, moving_digits

    rng = np.random.default_rng(0)
    digits, labels = rng.random((50, 28, 28)).astype(np.float32), rng.integers(0, 10, 50)
    a, ya = moving_digits(digits, labels, 60, seed=1)
    b, yb = moving_digits(digits, labels, 60, seed=1)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert a.shape == (60, 10, 1, 24, 24) and set(ya) <= set(range(len(MOTIONS)))
    # reversing a clip of "right" gives the motion of "left": same frames, other label
    right = a[ya == 0][0]
    mass = lambda f: (f[0] * np.arange(24)[None]).sum() / f[0].sum()  # noqa: E731
    assert right.shape[0] == 10 and np.isfinite(mass(right[0]))


def test_every_aggregator_runs_and_only_order_aware_ones_see_order():
    torch.manual_seed(0)
    clips = torch.rand(2, 5, 1, 24, 24)
    for agg in ("lstm", "single_frame", "mean_pool", "temporal_conv"):
        m = LRCN(6, aggregator=agg).eval()
        out, rev = m(clips), m(clips.flip(1))
        assert out.shape == (2, 6)
        assert torch.allclose(out, rev, atol=1e-5) == (agg in ("single_frame", "mean_pool")), agg
    frozen = LRCN(6).freeze_cnn()
    assert not any(p.requires_grad for p in frozen.cnn.parameters())
    with pytest.raises(ValueError, match="aggregator"):
        LRCN(6, aggregator="gru")


def test_moving_digits_difficulty_knobs_perturb_only_when_asked():
    from isthmus.data.videos import moving_digits

    rng = np.random.default_rng(0)
    digits, labels = rng.random((20, 28, 28)).astype(np.float32), rng.integers(0, 10, 20)
    base, y = moving_digits(digits, labels, 8, seed=3)
    off, y0 = moving_digits(digits, labels, 8, seed=3, jitter=0.0, noise=0.0)
    assert np.array_equal(base, off) and np.array_equal(y, y0)  # the knobs at 0 change nothing
    jit, yj = moving_digits(digits, labels, 8, seed=3, jitter=3.0)
    assert np.array_equal(y, yj) and not np.array_equal(base, jit)  # same labels, moved digits
    noisy, _ = moving_digits(digits, labels, 8, seed=3, noise=0.3)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0 and (noisy[base == 0] > 0).mean() > 0.3  # background noised
    with pytest.raises(ValueError, match="jitter"):
        moving_digits(digits, labels, 2, jitter=-1.0)
