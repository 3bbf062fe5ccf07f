"""RAE-diffusion recipe parts: the dimension-dependent time shift."""

import math

import pytest

from isthmus.recipes.rae_diffusion import time_shift


def test_time_shift_rule():
    assert time_shift(512, 64) == pytest.approx(2 * math.sqrt(2))
    assert time_shift(64, 64) == 1.0
