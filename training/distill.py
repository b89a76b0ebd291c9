"""Knowledge distillation: the student matches a teacher's softened class probabilities on the same view, and
optionally the direction of the teacher's embedding of that view.

``loss = (1 - weight) * cross_entropy(student, labels) + weight * T^2 * KL(teacher_T || student_T)``
(Hinton et al., 2015), where ``_T`` is the softmax at temperature ``T``; the ``T^2`` keeps the gradient scale
independent of ``T``. ``--kd-features W`` adds ``W * (1 - cos(map(student features), teacher features))``
(:class:`FeatureMatch`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


class FeatureMatch(nn.Module):
    """Representation distillation: five class probabilities say little about an image, the teacher's embedding of
    it says what else the teacher sees. The student's penultimate activations (VGG's second hidden layer, after its
    ReLU, before dropout) pass through a learned linear map and are pulled towards the direction of the teacher's
    pooled embedding (the input of EfficientNet-Lite's classifier): ``loss = 1 - cos``, averaged over the batch
    (a linear map as in FitNets, Romero et al. 2015; cosine as in CRD's embedding heads, Tian et al. 2020).

    Both activations are captured by forward hooks while the usual forwards run, so the step computes nothing
    twice. The map trains with the student and is not part of the exported model.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        head = getattr(getattr(teacher, "net", None), "_fc", None)
        if head is None:
            raise SystemExit("--kd-features matches one teacher's embedding; give one --teacher, not several")
        self.proj = nn.Linear(student.classifier[3].out_features, head.in_features)
        self.student_features: torch.Tensor | None = None
        self.teacher_features: torch.Tensor | None = None
        student.classifier[4].register_forward_hook(self._keep_student)
        head.register_forward_pre_hook(self._keep_teacher)

    def _keep_student(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.student_features = output

    def _keep_teacher(self, module: nn.Module, inputs: tuple) -> None:
        self.teacher_features = inputs[0].detach()

    def loss(self) -> torch.Tensor:
        """``1 - cos`` of the last forwards' student (mapped) and teacher features, averaged over the batch."""
        if self.student_features is None or self.teacher_features is None:
            raise RuntimeError("FeatureMatch.loss needs a student and a teacher forward first")
        mapped = self.proj(self.student_features).float()
        target = self.teacher_features.float().flatten(1)
        return (1.0 - F.cosine_similarity(mapped, target, dim=1)).mean()
