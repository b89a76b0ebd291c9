"""Knowledge distillation: the student matches a teacher's softened class probabilities on the same view.

``loss = (1 - weight) * cross_entropy(student, labels) + weight * T^2 * KL(teacher_T || student_T)``
(Hinton et al., 2015), where ``_T`` is the softmax at temperature ``T``; the ``T^2`` keeps the gradient scale
independent of ``T``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard_loss: torch.Tensor,
    weight: float,
    temperature: float,
) -> torch.Tensor:
    """Blend of the hard-label loss (already computed) and the soft-target loss."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight {weight} must be in [0, 1]")
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    return (1.0 - weight) * hard_loss + weight * soft
