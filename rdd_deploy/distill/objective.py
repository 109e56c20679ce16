"""The training objective of each method: the task loss, optionally RDD re-weighted, plus distillation terms.

    ce        CE (+ 0.4 aux CE)                      the baseline, and how teachers are trained
    kd        CE + KD                                Eq. 1 + Eq. 2
    rdd       RD * CE + KD                           Eq. 3: RDD re-weights the task loss of KD
    at, cwd   CE + AT | CWD                          other distillers (Table 8)
    at+rdd    RD * CE + AT,  cwd+rdd: RD * CE + CWD  RDD on top of them
"""

from __future__ import annotations

import torch
from torch import nn

from rdd_deploy.distill.config import DistillConfig
from rdd_deploy.distill.distillers import at_loss, cwd_loss
from rdd_deploy.distill.losses import LossOutput, RDDLoss, kd_loss, task_loss
from rdd_deploy.models.segmentor import upsample_logits

# AT pairs the two dilated stages (layer3, layer4): both at 1/8 resolution in teacher and student.
AT_STAGES = slice(2, 4)


class Objective(nn.Module):
    """`objective(student_out, teacher_out, target, iteration) -> LossOutput` for one method."""

    def __init__(self, config: DistillConfig, total_iters: int, ignore_index: int = 255) -> None:
        super().__init__()
        self.method = config.method
        self.base = config.method.split("+")[0]
        self.config = config
        self.ignore_index = ignore_index
        self.rdd: RDDLoss | None = None
        if config.method.endswith("rdd"):
            rdd = config.rdd
            self.rdd = RDDLoss(total_iters, rdd.tfe_fraction, rdd.threshold, rdd.mode, rdd.preset,
                               config.temperature, config.kd_weight if self.base == "rdd" else 0.0,
                               config.aux_weight, ignore_index, rdd.class_weights, rdd.min_kept, rdd.confidence,
                               rdd.tse_mean)

    @property
    def needs_teacher(self) -> bool:
        """Every method but plain CE runs the teacher."""
        return self.method != "ce"

    @property
    def needs_features(self) -> bool:
        """Attention transfer reads backbone stages, not only logits."""
        return self.base == "at"

    def stage(self, iteration: int) -> str:
        """RDD's stage at this iteration ('tfe'/'tse'), '-' for methods without RDD."""
        return self.rdd.stage(iteration) if self.rdd is not None else "-"

    def forward(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor] | None,
                target: torch.Tensor, iteration: int) -> LossOutput:
        """Total loss and its detached terms for logging."""
        if self.rdd is not None:
            result = self.rdd(student, teacher, target, iteration)
            total, terms = result.total, dict(result.terms)
        else:
            total = task_loss(student["out"], target, self.ignore_index)
            terms = {"task": total.detach()}
            if "aux" in student and self.config.aux_weight > 0:
                aux = task_loss(student["aux"], target, self.ignore_index)
                total = total + self.config.aux_weight * aux
                terms["aux"] = aux.detach()
            if self.base == "kd" and self.config.kd_weight > 0:
                t_out = upsample_logits(teacher["out"], student["out"].shape[-2:])
                kd = kd_loss(student["out"], t_out, self.config.temperature)
                total = total + self.config.kd_weight * kd
                terms["kd"] = kd.detach()
        if self.base == "at":
            at = at_loss(student["features"][AT_STAGES], teacher["features"][AT_STAGES])
            total = total + self.config.at_weight * at
            terms["at"] = at.detach()
        elif self.base == "cwd":
            cwd = cwd_loss(student["out"], teacher["out"], self.config.cwd_temperature)
            total = total + self.config.cwd_weight * cwd
            terms["cwd"] = cwd.detach()
        return LossOutput(total=total, terms=terms, stage=self.stage(iteration))
