"""SeriesDetector: per-step and per-channel scores; streaming scores equal batch scores."""

import numpy as np
import pytest
import torch

from isthmus.data import DataError
from isthmus.tasks.anomaly import AnomalyDetector
from isthmus.tasks.series import SeriesDetector

torch.set_num_threads(1)


def lagged(T: int, seed: int) -> np.ndarray:
    """Channel 1 follows channel 0 with a 3-step lag; channel 2 is independent noise-free sine."""
    rng = np.random.default_rng(seed)
    a = np.convolve(rng.normal(size=T + 3), np.ones(5) / 5, mode="same")
    t = np.arange(T)
    return np.c_[a[3:], a[:-3], np.sin(t / 7.0)].astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    det = AnomalyDetector(n_estimators=1, max_steps=300, distance_weight=0.0, random_state=0)
    return SeriesDetector(det, window=5).fit([lagged(600, 0), lagged(300, 1)])


def test_scores_per_step_and_channel(fitted):
    x = lagged(200, 2)
    bad = x.copy()
    bad[100:110, 1] = x[100:110, 0]  # channel 1 stops lagging: in range, relation broken
    s, s_bad = fitted.score_steps(x), fitted.score_steps(bad)
    assert s.shape == (200,) and s[:4].tolist() == [s[4]] * 4
    assert s_bad[100:110].mean() > 3 * np.median(s)
    c = fitted.channel_contributions(bad)
    assert c.shape == (200, 3)
    np.testing.assert_allclose(c.sum(1), 1.0, rtol=1e-6)
    assert c[102:110].mean(0).argmax() in (0, 1) and c[102:110, 2].mean() < 0.2
    flags = fitted.predict_steps(bad)
    np.testing.assert_array_equal(flags, (fitted.score_steps(bad) > fitted.detector_.threshold_).astype(np.int64))
    assert flags[100:110].sum() >= 3 and fitted.predict_steps(x).mean() < 0.05  # measured 5 of 10, and 0


def test_streaming_equals_batch(fitted):
    x = lagged(60, 3)
    stream = fitted.stream()
    online = [stream.update(row) for row in x]
    assert online[:4] == [None] * 4 and len(stream.buffer) == 5
    np.testing.assert_allclose(online[4:], fitted.score_steps(x)[4:], rtol=1e-10)


def test_bad_input(fitted):
    with pytest.raises(DataError, match="channels"):
        fitted.score_steps(np.zeros((20, 2)))
    with pytest.raises(DataError, match="longer than the series"):
        fitted.score_steps(np.zeros((3, 3)))
    with pytest.raises(DataError, match="expects 3 channels"):
        fitted.stream().update([1.0, 2.0])
    with pytest.raises(DataError, match="NaN"):
        fitted.stream().update([1.0, np.nan, 2.0])
