"""Multi-stage training: frozen modules stay bit-identical (BN statistics too), the lr milestone applies,
and the PLATEAU rule of the referee cards."""

import pytest
import torch
from torch import nn

from isthmus.tasks.multistage import StageConfig, improved_less_than, train_stage


def test_frozen_module_is_bit_identical_and_the_trainable_one_learns():
    torch.manual_seed(0)
    enc, head = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)), nn.Linear(8, 1)
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True)
    state = {k: v.clone() for k, v in enc.state_dict().items()}
    w0 = head.weight.detach().clone()
    loss = lambda a, b: ((head(enc(a)) - b) ** 2).mean()  # noqa: E731
    curve = train_stage([head], loss, (x, y), StageConfig(epochs=3, batch_size=16), seed=0, frozen=[enc],
                        evaluate=lambda: -float(loss(x, y)))
    assert all(torch.equal(state[k], v) for k, v in enc.state_dict().items())  # running stats included
    assert not torch.equal(head.weight, w0)
    assert len(curve) == 6 and curve[-1] > curve[0]
    assert all(p.requires_grad for p in enc.parameters())  # flags restored
    with pytest.raises(ValueError, match="both trainable and frozen"):
        train_stage([head], loss, (x, y), StageConfig(epochs=1), 0, frozen=[head])


def test_milestone_multiplies_the_learning_rate():
    p = nn.Parameter(torch.zeros(1))
    m = nn.Module()
    m.p = p
    # SGD with constant gradient 1: the step is lr before the milestone and lr·gamma after it
    train_stage([m], lambda a: (m.p * a).sum(), (torch.ones(4, 1),),
                StageConfig(epochs=4, optimizer="sgd", lr=1.0, batch_size=1, milestone=0.5, gamma=0.1), 0)
    assert p.item() == pytest.approx(-(8 * 1.0 + 8 * 0.1))


def test_improved_less_than():
    assert improved_less_than([0.5, 0.8, 0.9, 0.9, 0.9])
    assert not improved_less_than([0.5, 0.6, 0.7, 0.8, 0.9])  # still rising 11 % over the last fifth
    assert improved_less_than([0.9, 0.8])  # a fall is not an improvement
    assert not improved_less_than([0.9])
