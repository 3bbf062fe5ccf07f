"""Point-cloud parts: FPS, kNN patches, Chamfer distance, mini-PointNet."""

import pytest
import torch

from isthmus.nn.points import MiniPointNet, chamfer_distance, farthest_point_sample, knn_group


def test_fps_returns_distinct_deterministic_spread_out_indices():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(2, 100, 3, generator=g)
    idx = farthest_point_sample(pts, 16)
    assert idx.shape == (2, 16)
    assert all(len(set(row.tolist())) == 16 for row in idx)
    assert torch.equal(idx, farthest_point_sample(pts, 16))
    # on a line, FPS from one end picks the other end next, then the middle
    line = torch.linspace(0, 1, 11)[None, :, None].expand(1, 11, 3).contiguous()
    assert farthest_point_sample(line, 3).tolist() == [[0, 10, 5]]
    with pytest.raises(ValueError):
        farthest_point_sample(pts, 101)


def test_knn_group_equals_brute_force_and_is_centred():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(1, 50, 3, generator=g)
    centers = pts[:, :4]
    groups = knn_group(pts, centers, 5)
    assert groups.shape == (1, 4, 5, 3)
    for c in range(4):
        d = ((pts[0] - centers[0, c]) ** 2).sum(1)
        want = pts[0, d.argsort()[:5]] - centers[0, c]
        got = groups[0, c]
        assert torch.allclose(torch.sort(got.norm(dim=1)).values, torch.sort(want.norm(dim=1)).values)
    assert torch.allclose(groups[0, :, 0], torch.zeros(4, 3))  # each centre is its own nearest point


def test_chamfer_is_zero_on_identical_symmetric_and_permutation_invariant():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 20, 3, generator=g), torch.rand(3, 30, 3, generator=g)
    assert torch.allclose(chamfer_distance(a, a), torch.zeros(3))
    torch.testing.assert_close(chamfer_distance(a, b), chamfer_distance(b, a))
    perm = torch.randperm(20, generator=g)
    torch.testing.assert_close(chamfer_distance(a[:, perm], b), chamfer_distance(a, b))
    # hand case: {0} vs {1, 3} on a line: 0->1 is 1; 1->0 is 1, 3->0 is 9 (mean 5): total 6
    p = torch.tensor([[[0.0, 0, 0]]])
    q = torch.tensor([[[1.0, 0, 0], [3.0, 0, 0]]])
    assert chamfer_distance(p, q).item() == pytest.approx(6.0)


def test_minipointnet_is_permutation_invariant_within_a_patch():
    torch.manual_seed(0)
    net = MiniPointNet(dim=8, hidden=16)
    patches = torch.rand(2, 3, 6, 3)
    out = net(patches)
    assert out.shape == (2, 3, 8)
    torch.testing.assert_close(net(patches[:, :, torch.randperm(6)]), out)
