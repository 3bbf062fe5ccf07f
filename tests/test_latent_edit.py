"""isthmus.tasks.latent_edit (SeFa, inversion, edit candidates) and the worst-of-K augmentation trainer."""

import numpy as np
import pytest
import torch
from torch import nn

from isthmus.tasks.adversarial import worst_of_k
from isthmus.tasks.augmented_training import AugmentedClassifier, pick_rule, sampled_rule
from isthmus.tasks.latent_edit import (
    direction_monotonicity,
    direction_response,
    direction_scales,
    edit_candidates,
    invert,
    sefa_directions,
    valid_directions,
)


def test_sefa_recovers_a_planted_direction_and_is_orthonormal():
    torch.manual_seed(0)
    d = 6
    planted = torch.nn.functional.normalize(torch.randn(d), dim=0)
    q, _ = torch.linalg.qr(torch.randn(d, d))
    # W = U diag(sigma) V^T with the planted direction as the top right-singular vector
    v = torch.linalg.qr(torch.cat([planted[:, None], q[:, 1:]], 1))[0]
    sigma = torch.tensor([10.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    w = torch.linalg.qr(torch.randn(20, d))[0] @ torch.diag(sigma) @ v.T
    dirs, eig = sefa_directions(w, 3)
    assert abs(float(dirs[0] @ planted)) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(dirs @ dirs.T, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(eig, sigma[:3] ** 2, atol=1e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="k must be"):
        sefa_directions(w, 7)


def test_direction_scales_is_the_projected_spread():
    codes = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    s = direction_scales(codes, torch.eye(2))
    torch.testing.assert_close(s, torch.tensor([2.0, 0.0]))


def test_inversion_loss_does_not_increase_and_beats_the_encoder():
    torch.manual_seed(0)
    dec = nn.Linear(4, 16)
    z_true = torch.randn(32, 4)
    x = dec(z_true).detach()
    enc = lambda x: torch.zeros(len(x), 4)  # noqa: E731  a useless encoder: inversion must do the work
    z, trace = invert(enc, dec, x, steps=30, lr=0.1, batch_size=10)
    assert len(trace) == 31 and trace[-1] < 0.2 * trace[0]
    assert all(b <= a + 1e-9 for a, b in zip(trace, trace[1:]))
    assert all(p.grad is None for p in dec.parameters())  # the decoder is not trained


def test_edit_candidates_order_and_residual_keep_detail():
    dec = nn.Linear(2, 3)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]) * 0.1)
        dec.bias.fill_(0.5)
    codes = torch.zeros(2, 2)
    x = torch.tensor([[0.2, 0.3, 0.9], [0.4, 0.4, 0.4]])  # detail the decoder cannot make (third pixel)
    c = edit_candidates(dec, codes, x, torch.eye(2), [1.0, -1.0])
    assert c.shape == (2, 4, 3)
    torch.testing.assert_close(c[0, 0], torch.tensor([0.3, 0.3, 0.9]))  # dir 0, +1 -> pixel 0 +0.1
    torch.testing.assert_close(c[0, 3], torch.tensor([0.2, 0.2, 0.9]))  # dir 1, -1 -> pixel 1 -0.1
    plain = edit_candidates(dec, codes, x, torch.eye(2), [1.0], residual=False)
    torch.testing.assert_close(plain[1, 0], torch.tensor([0.6, 0.5, 0.5]))


def test_worst_of_k_picks_the_max_loss_candidate():
    net = lambda v: torch.stack([v.sum(1), -v.sum(1)], 1)  # noqa: E731  class 0 likes large sums
    cands = torch.tensor([[[1.0], [-2.0], [0.5]], [[3.0], [-1.0], [-4.0]]])
    y = torch.tensor([0, 1])
    picked, idx = worst_of_k(net, cands, y)
    assert idx.tolist() == [1, 0]  # class 0: the smallest sum; class 1: the largest
    torch.testing.assert_close(picked, torch.tensor([[-2.0], [3.0]]))


def _toy():
    torch.manual_seed(0)
    return nn.Linear(3, 2), torch.randn(8, 3), torch.randint(0, 2, (8,))


def test_augmented_classifier_mixes_clean_and_augmented_and_validates_clean_only():
    net, x, y = _toy()
    ce = nn.functional.cross_entropy
    aug = lambda n, x, y, e: x * 0  # noqa: E731
    model = AugmentedClassifier(net, aug, clean_weight=0.25).train()
    out = model.compute_loss((x, y))
    want = 0.25 * ce(net(x), y) + 0.75 * ce(net(x * 0), y)
    torch.testing.assert_close(out.loss, want)
    model.eval()
    torch.testing.assert_close(model.compute_loss((x, y)).loss, ce(net(x), y))


def test_pick_rules_worst_beats_random_on_loss():
    net, x, y = _toy()
    cands = torch.stack([x, x * 3, -x, x + 1], 1)
    worst = pick_rule("worst")(net, x, y, cands)
    rand = pick_rule("random", torch.Generator().manual_seed(0))(net, x, y, cands)
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        per = torch.stack([ce(net(cands[:, k]), y, reduction="none") for k in range(4)], 1)
        assert torch.allclose(ce(net(worst), y, reduction="none"), per.max(1).values)
        assert ce(net(worst), y) >= ce(net(rand), y)
    with pytest.raises(ValueError, match="Generator"):
        pick_rule("random")
    with pytest.raises(ValueError, match="candidates"):
        pick_rule("worst")(net, x, y, None)


def test_sampled_rule_worst_of_k_is_at_least_as_bad_as_one_draw():
    net, x, y = _toy()
    sample = lambda x, e, g: x + torch.randn(x.shape, generator=g)  # noqa: E731
    one = sampled_rule(sample, torch.Generator().manual_seed(0), k=1)(net, x, y, None)
    worst = sampled_rule(sample, torch.Generator().manual_seed(0), k=8)(net, x, y, None)
    ce = nn.functional.cross_entropy
    with torch.no_grad():  # the first of the 8 draws is `one`, so the worst is at least as bad per item
        assert (ce(net(worst), y, reduction="none") >= ce(net(one), y, reduction="none") - 1e-6).all()


def test_direction_monotonicity_separates_a_lighting_direction_from_a_dead_one():
    dec = nn.Linear(2, 16)
    with torch.no_grad():
        dec.weight.zero_()
        dec.weight[:, 0] = 0.1  # direction 0 brightens every pixel; direction 1 does nothing
        dec.bias.fill_(0.4)
    x = torch.full((5, 16), 0.4) + 0.05 * torch.rand(5, 16)
    regress = lambda v: np.asarray(v).reshape(len(v), -1).mean(1, keepdims=True)  # noqa: E731  "ambient"
    rho = direction_monotonicity(dec, torch.zeros(5, 2), x, torch.eye(2), torch.ones(2), regress)
    assert rho[0] == pytest.approx(1.0) and rho[1] == 0.0


def test_direction_response_measures_the_size_a_monotone_check_ignores():
    dec = nn.Linear(2, 16)
    with torch.no_grad():
        dec.weight.zero_()
        dec.weight[:, 0] = 0.1  # direction 0: +0.1 per unit step on every pixel
        dec.weight[:, 1] = 1e-6  # direction 1: monotone too, but a numerically negligible change
        dec.bias.fill_(0.4)
    x = torch.full((5, 16), 0.4) + 0.05 * torch.rand(5, 16)
    regress = lambda v: np.asarray(v).reshape(len(v), -1).mean(1, keepdims=True)  # noqa: E731
    mags = torch.tensor([2.0, 2.0])
    rho, change = direction_response(dec, torch.zeros(5, 2), x, torch.eye(2), mags, regress)
    assert rho.shape == change.shape == (2, 1)
    assert rho[0, 0] == pytest.approx(1.0) and rho[1, 0] == pytest.approx(1.0)  # Spearman: both "valid"
    assert change[0, 0] == pytest.approx(0.4, rel=1e-4)  # 0.1 x (2 - (-2)) on the mean pixel
    assert abs(change[1, 0]) < 1e-5
    flipped, _ = direction_response(dec, torch.zeros(5, 2), x, -torch.eye(2), mags, regress)
    assert flipped[0, 0] == pytest.approx(-1.0)  # the sign is kept


def test_a_direction_is_valid_only_if_one_output_moves_consistently_and_by_enough():
    rho = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, -0.8], [0.4, 0.4]])
    size = np.array([[0.5, 0.0], [1e-6, 0.0], [0.0, 0.3], [1.0, 1.0]])
    # 0: monotone and large; 1: monotone but negligible (a dead decoder); 2: the same output must carry both,
    # sign ignored; 3: large but not monotone
    np.testing.assert_array_equal(valid_directions(rho, size, 0.1), [True, False, True, False])
    np.testing.assert_array_equal(valid_directions(np.array([[0.9, 0.0]]), np.array([[0.0, 0.5]]), 0.1), [False])
