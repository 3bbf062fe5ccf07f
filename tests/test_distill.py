"""Distillation: hand-computed loss, alpha extremes, a frozen teacher."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.distill import Distilled, distillation_loss


def test_loss_matches_a_hand_computation():
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    p = torch.softmax(t / 2, -1)[0]
    q = torch.softmax(s / 2, -1)[0]
    kl = float((p * (p / q).log()).sum())
    assert distillation_loss(s, t, temperature=2.0).item() == pytest.approx(4 * kl, rel=1e-6)
    assert distillation_loss(t, t).item() == pytest.approx(0.0, abs=1e-5)  # float32 round-off
    with pytest.raises(ValueError):
        distillation_loss(s, t, temperature=0)


def test_alpha_zero_is_cross_entropy_and_the_teacher_gets_no_gradient():
    torch.manual_seed(0)
    student, teacher = nn.Linear(3, 4), nn.Linear(3, 4)
    x, y = torch.randn(8, 3), torch.randint(0, 4, (8,))
    out = Distilled(student, teacher, alpha=0.0).compute_loss((x, y))
    assert out.loss.item() == pytest.approx(F.cross_entropy(student(x), y).item(), rel=1e-6)
    out = Distilled(student, teacher, alpha=0.7).compute_loss((x, y))
    out.loss.backward()
    assert teacher.weight.grad is None and student.weight.grad is not None
    assert list(Distilled(student, teacher).parameters()) == list(student.parameters())
    assert not math.isnan(out.losses["distillation"].item())
