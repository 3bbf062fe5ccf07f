"""STARFlow parts of the autoregressive flow: deep–shallow depths, class conditioning of the deep block only,
the guidance rule, the score-based denoising step; and the DiT / class-conditional flow-matching prior."""

import math

import pytest
import torch

from isthmus.models.diffusion import FlowMatchingConfig, FlowMatchingPrior
from isthmus.models.flows import AutoregressiveFlow, FlowConfig, guide
from isthmus.nn.dit import DiT


def cond_flow(**kw):
    torch.manual_seed(0)
    m = AutoregressiveFlow(FlowConfig(dim=6, token_dim=2, width=16, heads=2, blocks=3, depths=[1, 1, 2],
                                      n_classes=3, **kw))
    with torch.no_grad():
        for blk in m.flow:
            blk.out.weight.normal_(0, 0.3)
            blk.out.bias.normal_(0, 0.3)
        m.flow[-1].label.weight.normal_(0, 1.0)
    return m.eval().double()


def test_deep_shallow_layout_conditions_only_the_last_block():
    m = cond_flow()
    assert [len(b.blocks) for b in m.flow] == [1, 1, 2]
    assert [b.label is not None for b in m.flow] == [False, False, True]
    with pytest.raises(Exception, match="depths"):
        FlowConfig(dim=6, token_dim=2, blocks=3, depths=[1, 2]).validate()


def test_conditional_log_prob_is_exact_and_labels_matter():
    m = cond_flow()
    x = torch.randn(2, 6, dtype=torch.float64)
    y = torch.tensor([0, 2])
    lp = m.log_prob(x, y)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda v, i=i: m.to_noise(v[None], y[i:i + 1])[0][0], x[i])
        z = m.to_noise(x[i:i + 1], y[i:i + 1])[0][0]
        ref = -0.5 * (z.pow(2).sum() + 6 * math.log(2 * math.pi)) + torch.linalg.slogdet(jac)[1]
        assert lp[i].item() == pytest.approx(ref.item(), abs=1e-8)
    assert not torch.allclose(lp, m.log_prob(x, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="labels"):
        m.log_prob(x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="unconditional"):
        AutoregressiveFlow(FlowConfig(dim=6, token_dim=2)).log_prob(x.float(), y)


def test_conditional_inverse_is_exact_and_guidance_zero_is_the_conditional():
    m = cond_flow()
    y = torch.tensor([0, 1, 2])
    a = m.sample(3, torch.Generator().manual_seed(1), labels=y)
    b = m.sample(3, torch.Generator().manual_seed(1), labels=y, guidance=0.0)
    torch.testing.assert_close(a, b)
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(m.to_noise(a, y)[0], z)  # sampling inverts to_noise exactly
    c = m.sample(3, torch.Generator().manual_seed(1), labels=y, guidance=2.0)
    assert not torch.allclose(a, c)


def test_guide_formula_on_hand_values():
    mu_c, s_c, mu_u, s_u = torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.0]), torch.tensor([1.0])
    mu, s = guide(mu_c, s_c, mu_u, s_u, 0.0)
    assert (mu.item(), s.item()) == (1.0, 0.5)
    # w = 1: s = 0.25, k = 1 + 1 - 0.25 = 1.75; μ = (2·1 − 0.25·0)/1.75; σ = 0.5/√1.75
    mu, s = guide(mu_c, s_c, mu_u, s_u, 1.0)
    assert mu.item() == pytest.approx(2 / 1.75) and s.item() == pytest.approx(0.5 / math.sqrt(1.75))
    # σ_c > σ_u clamps s to 1: k = 1, σ unchanged, μ = (1+w)μ_c − wμ_u
    mu, s = guide(mu_c, torch.tensor([2.0]), torch.tensor([0.5]), s_u, 1.0)
    assert mu.item() == pytest.approx(1.5) and s.item() == pytest.approx(2.0)


def test_denoise_is_tweedie_for_the_identity_flow():
    m = AutoregressiveFlow(FlowConfig(dim=4, token_dim=1, width=8, heads=2, depth=1, blocks=2, noise_std=0.3))
    x = torch.randn(5, 4)
    # identity init: log p = N(x; 0, I), ∇ = −x, so one step gives x·(1 − σ²)
    torch.testing.assert_close(m.denoise(x), x * (1 - 0.09))


def test_dit_starts_at_zero_and_the_wide_head_changes_nothing_at_init():
    torch.manual_seed(0)
    for hw in (0, 32):
        net = DiT(token_dim=8, n_tokens=4, width=16, depth=2, heads=2, n_classes=3, head_width=hw)
        out = net(torch.randn(3, 4, 8), torch.rand(3), torch.tensor([0, 1, 3]))
        assert out.shape == (3, 4, 8) and torch.equal(out, torch.zeros_like(out))


def test_dit_prior_trains_down_and_samples_are_seeded_with_guidance():
    from isthmus.train import Trainer, TrainerConfig

    torch.manual_seed(0)
    y = torch.randint(0, 2, (256,))
    x = torch.randn(256, 8) * 0.1 + (y[:, None].float() * 2 - 1)
    prior = FlowMatchingPrior(FlowMatchingConfig(dim=8, net="dit", tokens=2, width=16, depth=1, heads=2,
                                                 n_classes=2, steps=10))
    res = Trainer(prior, TrainerConfig(epochs=15, batch_size=64, lr=3e-3, progress=False)).fit((x, y))
    assert res.history[-1]["train_loss"] < 0.7 * res.history[0]["train_loss"]
    lab = torch.tensor([0] * 20 + [1] * 20)
    a = prior.sample(40, torch.Generator().manual_seed(0), labels=lab)
    b = prior.sample(40, torch.Generator().manual_seed(0), labels=lab, guidance=0.0)
    torch.testing.assert_close(a, b)
    assert a[:20].mean() < -0.5 and a[20:].mean() > 0.5  # the class decides the mode
    with pytest.raises(ValueError, match="labels"):
        prior.sample(2, labels=torch.tensor([0, 5]))


def test_vector_conditioned_prior_follows_its_condition():
    torch.manual_seed(0)
    prior = FlowMatchingPrior(FlowMatchingConfig(dim=2, width=32, depth=2, cond_dim=1, steps=20))
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for _ in range(300):
        c = torch.randint(0, 2, (128, 1)).float()
        x = (c * 4 - 2).expand(-1, 2) + 0.1 * torch.randn(128, 2)
        loss = prior.flow_matching_loss(x, c)
        opt.zero_grad()
        loss.backward()
        opt.step()
    c = torch.tensor([[0.0]] * 50 + [[1.0]] * 50)
    s = prior.sample(100, torch.Generator().manual_seed(0), cond=c)
    assert s[:50].mean() < -1.5 and s[50:].mean() > 1.5
    with pytest.raises(ValueError, match="cond"):
        prior.sample(3)
