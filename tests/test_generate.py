"""Two-stage generation: fit, seeded sampling, every prior kind, save/load round trip."""

import pytest
import torch

from isthmus.models import AutoEncoder
from isthmus.tasks.generate import TwoStageGenerator
from isthmus.train import TrainerConfig


def data():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, 2, generator=g)
    return torch.cat([z, z @ torch.tensor([[1.0, 0.5], [0.2, -1.0]])], 1)  # 4-D data on a 2-D plane


@pytest.mark.parametrize("prior", ["gaussian", "flow_matching", "flow"])
def test_fit_sample_save_load(prior, tmp_path):
    torch.manual_seed(0)
    ae = AutoEncoder.mlp(in_dim=4, latent_dim=2, hidden=(16,))
    opts = {"flow_matching": {"width": 16, "depth": 1, "steps": 5},
            "flow": {"width": 16, "heads": 2, "depth": 1, "blocks": 2}, "gaussian": {}}[prior]
    gen = TwoStageGenerator(ae, prior, opts).fit(
        data(), TrainerConfig(epochs=3, batch_size=64, progress=False),
        TrainerConfig(epochs=2, batch_size=64, progress=False))
    a, b = gen.sample(8, seed=1), gen.sample(8, seed=1)
    assert a.shape == (8, 4) and torch.equal(a, b) and not torch.equal(a, gen.sample(8, seed=2))
    gen.save(tmp_path / "g")
    back = TwoStageGenerator.load(tmp_path / "g")
    torch.testing.assert_close(back.sample(8, seed=1), a)


def test_gaussian_prior_matches_latent_moments():
    torch.manual_seed(0)
    ae = AutoEncoder.mlp(in_dim=4, latent_dim=2, hidden=(16,))
    gen = TwoStageGenerator(ae, "gaussian").fit(data(), TrainerConfig(epochs=3, batch_size=64, progress=False))
    z = gen.encode(data())
    s = gen.sample_latents(20000, seed=0)
    torch.testing.assert_close(s.mean(0), z.mean(0), atol=0.05 * float(z.std()), rtol=0)
    torch.testing.assert_close(torch.cov(s.T), torch.cov(z.T), atol=0.05 * float(z.var()), rtol=0.05)


def test_errors():
    ae = AutoEncoder.mlp(in_dim=4, latent_dim=2, hidden=(16,))
    with pytest.raises(ValueError, match="prior"):
        TwoStageGenerator(ae, "gan")
    with pytest.raises(RuntimeError, match="fit"):
        TwoStageGenerator(ae).sample(2)
    with pytest.raises(ValueError, match="NaN"):
        TwoStageGenerator(ae).fit(torch.full((4, 4), float("nan")))
