"""Procedural point clouds, few-shot episodes and the Point-MAE / plain point-AE models."""

import numpy as np
import pytest
import torch

from isthmus.data.points import POINT_CLASSES, make_point_clouds, sample_surface
from isthmus.metrics.fewshot import few_shot_episode
from isthmus.models.point_mae import PointFoldingAE, PointMAE, PointMAEConfig, group_points


def test_clouds_are_balanced_deterministic_and_in_the_unit_ball():
    x, y = make_point_clouds(20, n_points=64, seed=3)
    assert x.shape == (20, 64, 3) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [2] * 10
    np.testing.assert_allclose(np.linalg.norm(x, axis=2).max(1), 1.0, rtol=1e-5)  # scaled into the unit ball
    np.testing.assert_allclose(x.mean(1), 0.0, atol=0.05)  # centred (jitter is added after, hence the slack)
    x2, _ = make_point_clouds(20, n_points=64, seed=3)
    np.testing.assert_array_equal(x, x2)
    u, yu = make_point_clouds(4, n_points=64, seed=3, unions=True)
    assert (yu == -1).all() and not np.allclose(u, x[:4])
    with pytest.raises(ValueError, match="unknown"):
        make_point_clouds(2, classes=("sphere", "blob"))


def test_canonical_surfaces_have_their_defining_geometry():
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(np.linalg.norm(sample_surface("sphere", 500, rng), axis=1), 1.0)
    cube = sample_surface("cube", 500, rng)
    np.testing.assert_allclose(np.abs(cube).max(1), 1.0)  # every point on a face
    torus = sample_surface("torus", 500, rng)  # distance to the ring of radius 1 equals the tube radius 0.25
    ring = np.hypot(torus[:, 0], torus[:, 1]) - 1.0
    np.testing.assert_allclose(np.hypot(ring, torus[:, 2]), 0.25, atol=1e-9)
    pyr = sample_surface("pyramid", 2000, rng)  # flat square base and 4 planar faces: |x|,|y| bound by height
    assert set(POINT_CLASSES) >= {"sphere", "cube", "torus", "pyramid"} and pyr.shape == (2000, 3)


def test_episodes_are_disjoint_balanced_and_fixed_by_the_seed():
    y = np.repeat(np.arange(10), 40)
    ep = few_shot_episode(y, n_way=5, k_shot=10, n_query=20, seed=4)
    assert len(set(ep.support) & set(ep.query)) == 0
    assert ep.support.size == 50 and ep.query.size == 100 and len(set(ep.classes)) == 5
    np.testing.assert_array_equal(y[ep.support], ep.classes[ep.support_y])
    np.testing.assert_array_equal(y[ep.query], ep.classes[ep.query_y])
    again = few_shot_episode(y, 5, 10, 20, seed=4)
    np.testing.assert_array_equal(ep.support, again.support)
    assert not np.array_equal(ep.support, few_shot_episode(y, 5, 10, 20, seed=5).support)
    with pytest.raises(ValueError, match="items"):
        few_shot_episode(y, 5, 30, 20, seed=0)


def test_grouping_centres_are_cloud_points_and_patches_are_centred():
    x = torch.as_tensor(make_point_clouds(3, n_points=64, seed=0)[0])
    centres, patches = group_points(x, 8, 4)
    assert centres.shape == (3, 8, 3) and patches.shape == (3, 8, 4, 3)
    d = (centres[:, :, None] - x[:, None]).pow(2).sum(-1).min(-1).values  # exact, unlike cdist's matmul form
    assert float(d.max()) == 0.0
    assert float(patches.norm(dim=-1).min(-1).values.max()) < 1e-3  # each patch holds its centre (at ~0)


def test_point_mae_hides_the_declared_share_and_both_models_train():
    torch.manual_seed(0)
    cfg = PointMAEConfig(n_points=64, groups=10, k=8, dim=16, heads=2, depth=1, decoder_depth=1, mask_ratio=0.6)
    x = torch.as_tensor(make_point_clouds(4, n_points=64, seed=1)[0])
    for model in (PointMAE(cfg), PointFoldingAE(cfg)):
        out = model(x, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss) and model.encode(x).shape == (4, 32)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        first = float(out.loss.detach())
        for _ in range(30):
            loss = model(x, generator=torch.Generator().manual_seed(0)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert float(loss) < first
    mask = PointMAE(cfg)(x).stats["mask"]
    assert (mask.sum(1) == 6).all()  # round(10 * 0.6) hidden patches per cloud


@pytest.mark.parametrize("cls", [PointMAE, PointFoldingAE])
def test_point_models_pass_the_conformance_battery(cls, tmp_path):
    from tests.conformance import run_battery

    cfg = PointMAEConfig(n_points=16, groups=4, k=4, dim=8, heads=2, depth=1, decoder_depth=1, embed_hidden=8)
    run_battery(lambda: cls(cfg), torch.as_tensor(make_point_clouds(3, n_points=16, seed=0)[0]), tmp_path)
