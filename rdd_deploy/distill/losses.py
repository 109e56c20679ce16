"""Relative Difficulty Distillation: the loss terms of the paper (Eq. 1-9) and the two-stage criterion.

Every function takes logits [N,C,H,W] (and labels [N,H,W]), computes in float32 even
under autocast, and never back-propagates into the teacher. RDD adds no objective:
it only re-weights the per-pixel task loss (Eq. 3), with weights from the teacher's
two heads early in training (TFE-RDD) and from teacher-student disagreement later
(TSE-RDD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rdd_deploy.models.segmentor import upsample_logits

Mode = Literal["xor", "and", "or"]
Confidence = Literal["max", "target"]
Preset = Literal["paper", "official"]

# Pixels above this many are not needed to find the OHEM threshold; the paper-era code used 100000 per GPU batch.
OFFICIAL_MIN_KEPT = 100_000
# The official code's OHEM class weights for Cityscapes' 19 classes; it weights TSE-RDD's CE with them, not TFE's.
CITYSCAPES_CLASS_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023, 0.9539,
                            0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507)


def _log_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return F.log_softmax(logits.float() / temperature, dim=1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Eq. 2: mean over all N*H*W pixels of KL(softmax(t/T) || softmax(s/T)), times T^2."""
    with torch.autocast(student_logits.device.type, enabled=False):
        log_ps = _log_probs(student_logits, temperature)
        log_pt = _log_probs(teacher_logits.detach(), temperature)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)
        return kl.mean() * temperature**2


def tfe_difficulty(teacher_logits: torch.Tensor, teacher_aux_logits: torch.Tensor,
                   direction: Literal["main_aux", "aux_main"] = "main_aux") -> torch.Tensor:
    """Eq. 6-7: RD_TFE = exp(-KL(p_main || p_aux)) per pixel, [N,H,W] in (0, 1]; "aux_main" swaps the KL."""
    if direction not in ("main_aux", "aux_main"):
        raise ValueError(f"direction must be 'main_aux' or 'aux_main', got {direction!r}")
    with torch.no_grad(), torch.autocast(teacher_logits.device.type, enabled=False):
        log_main = _log_probs(teacher_logits)
        log_aux = _log_probs(teacher_aux_logits)
        if direction == "aux_main":
            log_main, log_aux = log_aux, log_main
        divergence = (log_main.exp() * (log_main - log_aux)).sum(dim=1)
        return torch.exp(-divergence.clamp_min(0.0))


def _max_log_prob(logits: torch.Tensor) -> torch.Tensor:
    """log(max softmax probability) per pixel without materialising the C-channel log-softmax."""
    logits = logits.float()
    return logits.amax(dim=1) - logits.logsumexp(dim=1)


def _log_confidence(log_probs: torch.Tensor, confidence: Confidence, target: torch.Tensor | None,
                    ignore_index: int) -> torch.Tensor:
    if confidence == "max":
        return log_probs.max(dim=1).values
    if confidence != "target":
        raise ValueError(f"confidence must be 'max' or 'target', got {confidence!r}")
    if target is None:
        raise ValueError("confidence='target' needs the labels (target=...)")
    safe_target = torch.where(target == ignore_index, torch.zeros_like(target), target)
    return log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)


def _hard_pixels(log_conf: torch.Tensor, threshold: float, valid: torch.Tensor | None, min_kept: int) -> torch.Tensor:
    """Eq. 8: hard where confidence <= t; with min_kept, t is raised (OHEM) until that many valid pixels are hard."""
    log_threshold = torch.full((), math.log(threshold), device=log_conf.device)  # a fill kernel, not a host copy
    if min_kept > 0:
        candidates = log_conf[valid] if valid is not None else log_conf.flatten()
        if candidates.numel() > 0:
            kth = torch.kthvalue(candidates, min(min_kept, candidates.numel())).values
            log_threshold = torch.maximum(log_threshold, kth)
    return log_conf <= log_threshold


def _combine(hard_student: torch.Tensor, hard_teacher: torch.Tensor, mode: Mode) -> torch.Tensor:
    if mode == "xor":
        return hard_student ^ hard_teacher
    if mode == "and":
        return hard_student & hard_teacher
    if mode == "or":
        return hard_student | hard_teacher
    raise ValueError(f"mode must be 'xor', 'and' or 'or', got {mode!r}")


def _select(log_conf_s: torch.Tensor, log_conf_t: torch.Tensor, threshold: float, mode: Mode,
            valid: torch.Tensor | None, min_kept: int = 0) -> torch.Tensor:
    selected = _combine(_hard_pixels(log_conf_s, threshold, valid, min_kept),
                        _hard_pixels(log_conf_t, threshold, valid, min_kept), mode)
    if valid is not None:
        selected = selected & valid
    return selected.float()


def tse_difficulty(student_logits: torch.Tensor, teacher_logits: torch.Tensor, threshold: float = 0.7,
                   mode: Mode = "xor", target: torch.Tensor | None = None, confidence: Confidence = "max",
                   ignore_index: int = 255) -> torch.Tensor:
    """Eq. 8-9: RD_TSE = hard_s XOR hard_t (or AND / OR), a float 0/1 map [N,H,W]; ignored pixels are 0."""
    valid = None if target is None else target != ignore_index
    with torch.no_grad(), torch.autocast(student_logits.device.type, enabled=False):
        log_conf_s = _log_confidence(_log_probs(student_logits), confidence, target, ignore_index)
        log_conf_t = _log_confidence(_log_probs(teacher_logits), confidence, target, ignore_index)
        return _select(log_conf_s, log_conf_t, threshold, mode, valid)


def pixel_cross_entropy(log_probs: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Per-pixel CE [N,H,W] from log-probabilities; 0 at ignored pixels."""
    return F.nll_loss(log_probs, target, ignore_index=ignore_index, reduction="none")


def _pixel_class_weights(target: torch.Tensor, class_weights: torch.Tensor | None, ignore_index: int) -> torch.Tensor:
    valid = target != ignore_index
    if class_weights is None:
        return valid.float()
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    return class_weights.to(target.device, torch.float32)[safe_target] * valid


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    # An empty selection or an all-ignored batch has numerator 0; the clamp keeps 0/0 at 0 instead of NaN.
    return numerator / denominator.clamp_min(1e-12)


def task_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
              class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1: cross-entropy averaged over the labelled pixels (class-weighted mean when weights are given)."""
    with torch.autocast(logits.device.type, enabled=False):
        log_ps = _log_probs(upsample_logits(logits.float(), target.shape[-2:]))  # fp32 before the resize
        weights = _pixel_class_weights(target, class_weights, ignore_index)
        return _safe_ratio((weights * pixel_cross_entropy(log_ps, target, ignore_index)).sum(), weights.sum())


@dataclass
class LossOutput:
    """The total loss to back-propagate and detached terms for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    stage: str


class RDDLoss(nn.Module):
    """Eq. 3-5: RD * L_task + L_kd, TFE-RDD for the first `tfe_fraction` of iterations, TSE-RDD after.

    preset="paper" follows the paper; preset="official" reproduces the official code
    (KL(p_aux || p_main), target-class confidence with an OHEM threshold keeping
    `min_kept` pixels of this process's batch, CE averaged over all pixels in TFE and
    over selected pixels in TSE, class weights in TSE only, student aux head paired
    with the teacher's aux head, align_corners=True resizes, and TFE while
    iteration + 1 < tfe_fraction * total_iters as its 1-based loop counts).
    """

    def __init__(self, total_iters: int, tfe_fraction: float = 0.1, threshold: float = 0.7, mode: Mode = "xor",
                 preset: Preset = "paper", temperature: float = 1.0, kd_weight: float = 1.0, aux_weight: float = 0.4,
                 ignore_index: int = 255, class_weights: list[float] | torch.Tensor | None = None,
                 min_kept: int | None = None, confidence: Confidence | None = None,
                 tse_mean: Literal["pixels", "selected"] | None = None) -> None:
        super().__init__()
        if preset not in ("paper", "official"):
            raise ValueError(f"preset must be 'paper' or 'official', got {preset!r}")
        if not 0.0 <= tfe_fraction <= 1.0:
            raise ValueError(f"tfe_fraction must be in [0, 1], got {tfe_fraction}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        _combine(torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool), mode)  # validates mode
        self.preset, self.mode, self.threshold = preset, mode, threshold
        self.tfe_iters = round(tfe_fraction * total_iters)
        self.temperature, self.kd_weight, self.aux_weight = temperature, kd_weight, aux_weight
        self.ignore_index = ignore_index
        self.official = preset == "official"
        self.align_corners = self.official  # the official code resizes everything with align_corners=True
        # None: the preset's (paper: max probability, official: target class); set alone, it is ours, not the paper's
        self.confidence: Confidence = confidence or ("target" if self.official else "max")
        self.tse_over_selected = self.official if tse_mean is None else tse_mean == "selected"
        self.min_kept = (OFFICIAL_MIN_KEPT if self.official else 0) if min_kept is None else min_kept
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def stage(self, iteration: int) -> str:
        """'tfe' for 0-based iterations below tfe_fraction * total_iters (official: one fewer), 'tse' after."""
        return "tfe" if iteration + self.official < self.tfe_iters else "tse"

    def forward(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], target: torch.Tensor,
                iteration: int) -> LossOutput:
        """Total loss for one batch; model outputs may be at 1/8 of the label resolution."""
        stage = self.stage(iteration)
        with torch.autocast(target.device.type, enabled=False):
            heads = [("task", student["out"], teacher["out"], 1.0)]
            if "aux" in student and self.aux_weight > 0:
                paired = teacher.get("aux", teacher["out"]) if self.official else teacher["out"]
                heads.append(("aux", student["aux"], paired, self.aux_weight))
            tse_only = self.official and stage == "tfe"
            pixel_weights = _pixel_class_weights(target, None if tse_only else self.class_weights, self.ignore_index)
            rd_tfe = self._tfe_map(teacher, target) if stage == "tfe" else None
            terms: dict[str, torch.Tensor] = {}
            total = torch.zeros((), device=target.device)
            for name, s_logits, t_logits, weight in heads:
                # Cast before the resize: its backward sums ~300 fine-pixel gradients into each coarse logit,
                # which in bf16 loses a few percent of the gradient.
                log_ps = _log_probs(upsample_logits(s_logits.float(), target.shape[-2:], self.align_corners))
                ce = pixel_cross_entropy(log_ps, target, self.ignore_index) * pixel_weights
                if stage == "tfe":
                    rd = rd_tfe
                    denominator = torch.full((), float(target.numel()), device=target.device) if self.official \
                        else pixel_weights.sum()
                else:
                    rd = self._tse_map(log_ps.detach(), s_logits, t_logits, target)
                    denominator = (rd * pixel_weights).sum() if self.tse_over_selected else pixel_weights.sum()
                term = _safe_ratio((rd * ce).sum(), denominator)
                total = total + weight * term
                terms[name] = term.detach()
                if name == "task":
                    valid = (target != self.ignore_index).float()
                    terms["selected"] = _safe_ratio((rd * valid).sum(), valid.sum()).detach()
            if self.kd_weight > 0:
                t_out = upsample_logits(teacher["out"], student["out"].shape[-2:], self.align_corners)
                kd = kd_loss(student["out"], t_out, self.temperature)
                total = total + self.kd_weight * kd
                terms["kd"] = kd.detach()
        return LossOutput(total=total, terms=terms, stage=stage)

    def _tfe_map(self, teacher: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if "aux" not in teacher:
            raise ValueError("TFE-RDD needs the teacher's auxiliary head ('aux' output); build it with aux_head=True")
        direction = "aux_main" if self.official else "main_aux"
        rd = tfe_difficulty(teacher["out"], teacher["aux"], direction)
        # RD is computed at the teacher's resolution and upsampled, as cheap as it is smooth.
        return upsample_logits(rd.unsqueeze(1), target.shape[-2:], self.align_corners).squeeze(1)

    def _tse_map(self, log_ps: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
        size = target.shape[-2:]
        valid = target != self.ignore_index
        with torch.no_grad():
            if self.confidence == "max":
                # Like RD_TFE, each network's confidence is taken at its own resolution and upsampled: one
                # channel to resize instead of C, and the same treatment for student and teacher.
                log_conf_s, log_conf_t = (
                    upsample_logits(_max_log_prob(logits.detach()).unsqueeze(1), size).squeeze(1)
                    for logits in (student_logits, teacher_logits))
            else:
                log_conf_s = _log_confidence(log_ps, "target", target, self.ignore_index)
                log_pt = _log_probs(upsample_logits(teacher_logits.detach(), size, self.align_corners))
                log_conf_t = _log_confidence(log_pt, "target", target, self.ignore_index)
            return _select(log_conf_s, log_conf_t, self.threshold, self.mode, valid, self.min_kept)
