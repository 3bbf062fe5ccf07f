"""Seed-16 recipe logic: parameter matching, the floors, the illumination-prior inputs."""

import numpy as np
import pytest

pytest.importorskip("skimage")

from isthmus.metrics.image import psnr  # noqa: E402
from isthmus.recipes.low_light_cue import (  # noqa: E402
    LowLightCUE, Settings, gamma_tv, hist_eq, illumination_prior_data, matched_widths,
)


def test_generic_and_unet_arms_match_cues_parameters_within_ten_percent():
    from isthmus.models.cue import CUEEnhancer
    from isthmus.nn.unet import UNet, UNetConfig, count_parameters
    from isthmus.recipes.low_light_cue import _unfold_cfg

    s = Settings()
    target, prox, base = matched_widths(s)
    generic = count_parameters(CUEEnhancer(_unfold_cfg(s, "prox", prox)).net)
    unet = count_parameters(UNet(UNetConfig(3, 3, [base, 2 * base])))
    assert abs(generic / target - 1) <= 0.1 and abs(unet / target - 1) <= 0.1


def test_floors_brighten_a_dark_image():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.3, 0.7, (3, 3, 16, 16)).astype(np.float32)
    low = (0.1 * gt).astype(np.float32)
    out = gamma_tv(low)
    assert abs(out.mean() - 0.45) < 0.1 and psnr(gt, out).mean() > psnr(gt, low).mean() + 5
    assert hist_eq(low).shape == low.shape


def test_illumination_prior_inputs_are_masked_windows_of_the_brightened_max_channel():
    gt = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    x, target, keep = illumination_prior_data(gt, Settings(), np.random.default_rng(1))
    assert x.shape == target.shape == keep.shape == (4, 1, 16, 16)
    assert (x[keep == 0] == 0).all() and np.isclose(keep.mean(), 0.5)
    assert (x[keep == 1] >= gt.max(axis=1, keepdims=True)[keep == 1] - 1e-6).all()  # gamma <= 1 brightens
    assert target.std() < x[keep == 1].std()  # smoothed target


def test_declaration():
    r = LowLightCUE()
    assert [g.vs for g in r.gates if g.headline] == ["generic"]
    assert {p.arm for p in r.preconditions if p.metric == "converged"} == {"cue", "generic", "random_prior", "unet"}
