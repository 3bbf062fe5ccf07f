"""``TrainerConfig.grad_clip_groups``: the gradient norm is clipped per part, so a loss term with a huge
gradient in one part cannot shrink the gradient of another part (MM-GPVAE's per-network clipping)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isthmus.config import ConfigError
from isthmus.models import ModelOutput
from isthmus.train import Trainer, TrainerConfig

torch.set_num_threads(1)


class _TwoParts(nn.Module):
    """loss = 1000·a² + b²: a's gradient (2000 a) dwarfs b's (2 b)."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Linear(1, 1, bias=False)
        self.small = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.big.weight.fill_(1.0)
            self.small.weight.fill_(0.3)

    def compute_loss(self, batch) -> ModelOutput:
        a, b = self.big.weight.sum(), self.small.weight.sum()
        return ModelOutput(loss=1000 * a**2 + b**2, losses={})


def _fit(**kw) -> tuple[_TwoParts, Trainer]:
    model = _TwoParts()
    cfg = TrainerConfig(epochs=1, batch_size=4, optimizer="sgd", lr=1e-9, progress=False, device="cpu", **kw)
    trainer = Trainer(model, cfg)
    trainer.fit(torch.zeros(4, 1))  # one step; the clipped gradients stay on the parameters
    return model, trainer


def test_each_part_is_clipped_on_its_own():
    model, trainer = _fit(grad_clip=1.0, grad_clip_groups=["big."])
    assert model.big.weight.grad.item() == pytest.approx(1.0)  # 2000 clipped to norm 1
    assert model.small.weight.grad.item() == pytest.approx(0.6)  # 2 · 0.3, under the norm: untouched
    # the logged norm is that of all gradients before clipping
    assert trainer.last_grad_norm.item() == pytest.approx((2000**2 + 0.6**2) ** 0.5)


def test_a_global_clip_shrinks_the_small_part():
    model, _ = _fit(grad_clip=1.0)
    scale = 1.0 / (2000**2 + 0.6**2) ** 0.5
    assert model.big.weight.grad.item() == pytest.approx(2000 * scale, rel=1e-5)
    assert model.small.weight.grad.item() == pytest.approx(0.6 * scale, rel=1e-5)


def test_prefixes_need_a_clip_norm_and_must_match_a_parameter():
    with pytest.raises(ConfigError, match="grad_clip_groups needs grad_clip"):
        TrainerConfig(grad_clip_groups=["big."])
    with pytest.raises(ConfigError, match=r"no trainable parameter name starts with \['encoder.'\]"):
        _fit(grad_clip=1.0, grad_clip_groups=["encoder."])


def test_groups_round_trip_through_json():
    cfg = TrainerConfig(grad_clip=1.0, grad_clip_groups=["a.", "b."])
    assert TrainerConfig.from_dict(cfg.to_dict()) == cfg
