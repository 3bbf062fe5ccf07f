"""Knowledge distillation (Hinton et al. 2015, arXiv 1503.02531): a student trained on a teacher's softened
predictions and the labels.

``loss = α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − α) · CE(student, y)``; the ``T²`` keeps
the soft term's gradients on the scale of the hard one. The teacher is frozen (no gradient, its own mode left
as given). ``student_input`` adapts the batch for a student that reads another shape (e.g. flattened pixels
for an MLP student of a conv teacher).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.output import ModelOutput

__all__ = ["distillation_loss", "Distilled"]


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, batch mean."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = temperature
    return (
        t
        * t
        * F.kl_div(
            F.log_softmax(student_logits / t, -1), F.softmax(teacher_logits.detach() / t, -1), reduction="batchmean"
        )
    )


class Distilled(nn.Module):
    """Wraps a student for the Trainer: ``compute_loss((x, y))`` = the weighted soft and hard terms."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.5,
        student_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.student, self.temperature, self.alpha = student, temperature, alpha
        self._teacher = [teacher]  # a list: the teacher's weights are not this module's parameters
        self.student_input = student_input

    def compute_loss(self, batch: Any) -> ModelOutput:
        x, y = batch
        logits = self.student(self.student_input(x) if self.student_input else x)
        with torch.no_grad():
            teacher_logits = self._teacher[0](x)
        kd = self.alpha * distillation_loss(logits, teacher_logits, self.temperature)
        ce = (1 - self.alpha) * F.cross_entropy(logits, y)
        return ModelOutput(loss=kd + ce, losses={"distillation": kd, "cross_entropy": ce}, logits=logits)
