"""Flow-matching prior: shapes, seeded sampling, the time shift, and that it learns a two-mode distribution."""

import pytest
import torch

from isthmus.models.diffusion import FlowMatchingConfig, FlowMatchingPrior, shift_time


def test_time_shift_endpoints_and_monotone():
    t = torch.linspace(0, 1, 11)
    s = shift_time(t, 3.0)
    assert s[0] == 0 and s[-1] == 1 and (s[1:] > s[:-1]).all() and (s[1:-1] > t[1:-1]).all()
    assert torch.allclose(shift_time(t, 1.0), t)


def test_sampling_is_seeded_and_validates():
    torch.manual_seed(0)
    prior = FlowMatchingPrior(FlowMatchingConfig(dim=3, width=16, depth=1, steps=5)).eval()
    a = prior.sample(4, generator=torch.Generator().manual_seed(1))
    b = prior.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, 3)
    with pytest.raises(ValueError, match="latents"):
        prior.velocity(torch.zeros(2, 4), torch.zeros(2))


def test_learns_a_two_mode_distribution():
    from isthmus.train import Trainer, TrainerConfig

    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, (2048, 1), generator=g) * 2.0 - 1.0
    x = torch.cat([sign * 2 + 0.1 * torch.randn(2048, 1, generator=g), 0.1 * torch.randn(2048, 1, generator=g)], 1)
    torch.manual_seed(0)
    prior = FlowMatchingPrior(FlowMatchingConfig(dim=2, width=64, depth=2, steps=40))
    Trainer(prior, TrainerConfig(epochs=20, batch_size=128, lr=2e-3, progress=False)).fit(x)
    s = prior.eval().sample(1000, generator=torch.Generator().manual_seed(2))
    near = ((s[:, 0].abs() - 2).abs() < 0.5).float().mean().item()
    assert near > 0.8, near  # samples sit on the two modes, not between them
    assert 0.3 < (s[:, 0] > 0).float().mean().item() < 0.7  # both modes are used


def test_x_prediction_oracle_samples_land_on_the_data_and_has_zero_loss():
    """With ``prediction="x"`` a network that outputs the true clean point gives zero loss, and the Euler
    sampler's velocity (x_t − x̂)/t carries any start exactly onto it at t = 0."""
    from isthmus.config import ConfigError

    torch.manual_seed(0)
    target = torch.randn(1, 6)
    prior = FlowMatchingPrior(FlowMatchingConfig(dim=6, width=8, depth=1, steps=7, time_shift=2.0, prediction="x"))
    prior.network = lambda x, t, y=None, cond=None: target.expand(len(x), -1)  # type: ignore[method-assign]
    out = prior.sample(5, torch.Generator().manual_seed(1))
    assert torch.allclose(out, target.expand(5, -1), atol=1e-5)
    assert float(prior.compute_loss(target.expand(4, -1)).loss) == 0.0
    xt, t = torch.randn(3, 6), torch.tensor([0.2, 0.5, 0.9])
    assert torch.allclose(prior.velocity(xt, t), (xt - target) / t[:, None])
    with pytest.raises(ConfigError, match="prediction"):
        FlowMatchingConfig(dim=6, prediction="eps").validate()
