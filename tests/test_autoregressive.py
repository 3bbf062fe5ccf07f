"""Axial and full-causal priors: causality (future pixels cannot change earlier predictions) and an exact,
normalised likelihood (probabilities of every grid sum to one)."""

import itertools

import pytest
import torch

from isthmus.models.autoregressive import AxialPrior, FullCausalPrior, PriorConfig

CFG = PriorConfig(n_values=2, height=2, width=3, dim=16, heads=2, outer_depth=1, inner_depth=1)


@pytest.mark.parametrize("cls", [AxialPrior, FullCausalPrior])
def test_perturbing_future_pixels_leaves_earlier_logits_unchanged(cls):
    torch.manual_seed(0)
    cfg = PriorConfig(n_values=5, height=4, width=4, dim=16, heads=2, outer_depth=1, inner_depth=1)
    model = cls(cfg).eval()
    x = torch.randint(0, 5, (1, 4, 4))
    base = model.logits(x)
    for pos in range(16):  # change pixel pos: logits at raster positions <= pos must stay
        y = x.clone()
        i, j = divmod(pos, 4)
        y[0, i, j] = (y[0, i, j] + 1) % 5
        out = model.logits(y)
        flat_b, flat_o = base.reshape(16, -1), out.reshape(16, -1)
        torch.testing.assert_close(flat_o[: pos + 1], flat_b[: pos + 1])
        if pos < 15:
            assert not torch.allclose(flat_o[pos + 1 :], flat_b[pos + 1 :])


@pytest.mark.parametrize("cls", [AxialPrior, FullCausalPrior])
def test_likelihood_is_normalised_over_every_grid(cls):
    torch.manual_seed(0)
    model = cls(CFG).eval()
    grids = torch.tensor(list(itertools.product([0, 1], repeat=6))).reshape(-1, 2, 3)
    with torch.no_grad():
        total = model.log_prob(grids).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


def test_bits_per_dim_sampling_and_validation():
    torch.manual_seed(0)
    model = AxialPrior(CFG)
    x = torch.randint(0, 2, (4, 2, 3))
    bpd = model.bits_per_dim(x)
    assert bpd.item() == pytest.approx((-model.log_prob(x).mean() / (6 * torch.log(torch.tensor(2.0)))).item())
    a = model.sample(3, generator=torch.Generator().manual_seed(1))
    b = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 2, 3) and a.max() < 2
    with pytest.raises(ValueError, match="integers"):
        model.log_prob(torch.full((1, 2, 3), 2))
