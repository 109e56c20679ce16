"""RDDLoss(preset="official") against a float64 re-statement of one iteration of the official training script
(sunyueue/RDD train_onlykd_two_stage_diff.py: the TFE branch, OhemCrossEntropy2d.forward_with_teacher_student
with its Cityscapes class weights, and CriterionKD), in both stages, with and without the min_kept floor binding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rdd_deploy.distill.losses import CITYSCAPES_CLASS_WEIGHTS, RDDLoss

IGNORE, THRESH, C = 255, 0.7, 19
TOTAL, WARMUP = 40, 4  # tfe_fraction 0.1 of 40 iterations: the official --warmup_iter 4


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size, mode="bilinear", align_corners=True)


def _official_masks(pred: torch.Tensor, target: torch.Tensor, min_kept: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """get_mask: (valid & kept, kept, whether the min_kept floor raised the threshold); target flattened."""
    c = pred.shape[1]
    valid = target != IGNORE
    safe = target * valid.long()
    prob = F.softmax(pred, dim=1).transpose(0, 1).reshape(c, -1)
    prob = prob.masked_fill(~valid, 1)
    mask_prob = prob[safe, torch.arange(len(safe))]
    threshold, raised = THRESH, False
    if min_kept > 0:
        index = mask_prob.argsort()
        kth = mask_prob[index[min(len(index), min_kept) - 1]]
        if kth > THRESH:
            threshold, raised = kth, True
    kept = mask_prob <= threshold
    return valid & kept, kept, raised


def _official_tse(s: torch.Tensor, t: torch.Tensor, target: torch.Tensor, min_kept: int) -> tuple[torch.Tensor, bool]:
    n, h, w = target.shape
    s, t = _up(s, (h, w)), _up(t, (h, w))
    flat = target.reshape(-1)
    valid_s, kept_s, raised_s = _official_masks(s, flat, min_kept)
    valid_t, kept_t, raised_t = _official_masks(t, flat, min_kept)
    selected = valid_s ^ valid_t
    masked = (flat * (kept_s | kept_t).long()).masked_fill(~selected, IGNORE).view(n, h, w)
    weight = torch.tensor(CITYSCAPES_CLASS_WEIGHTS, dtype=torch.float64)
    return F.cross_entropy(s, masked, weight=weight, ignore_index=IGNORE), raised_s or raised_t


def official_iteration_loss(s: dict, t: dict, target: torch.Tensor, iteration: int,
                            min_kept: int) -> tuple[float, bool]:
    """task + KD of the official loop at 0-based `iteration` (its counter is iteration + 1), in float64."""
    s, t = ({k: v.double() for k, v in d.items()} for d in (s, t))
    size = tuple(target.shape[-2:])
    raised = False
    if iteration + 1 < WARMUP:
        ce = lambda x: F.cross_entropy(_up(x, size), target, ignore_index=IGNORE, reduction="none")  # noqa: E731
        task = ce(s["out"]) + 0.4 * ce(s["aux"])
        variance = F.kl_div(F.log_softmax(t["out"], 1), F.softmax(t["aux"], 1), reduction="none").sum(1)
        task = torch.mean(task * _up(torch.exp(-variance)[:, None], size)[:, 0])
    else:
        main, raised_main = _official_tse(s["out"], t["out"], target, min_kept)
        aux, raised_aux = _official_tse(s["aux"], t["aux"], target, min_kept)
        task, raised = main + 0.4 * aux, raised_main or raised_aux
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, C)  # noqa: E731
    kd = F.kl_div(F.log_softmax(flat(s["out"]), 1), F.softmax(flat(t["out"]), 1), reduction="batchmean")
    return (task + kd).item(), raised


def _batch(seed: int) -> tuple[dict, dict, torch.Tensor]:
    """Logits leaning towards a class map, so that some pixels are confident (p > 0.7) and some are not."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, C, (2, 4, 6), generator=g)
    target = F.interpolate(classes[:, None].float(), size=(32, 48), mode="nearest")[:, 0].long()
    target[:, :3] = IGNORE
    onehot = F.one_hot(classes, C).permute(0, 3, 1, 2).float()

    def logits() -> torch.Tensor:
        return torch.randn(2, C, 4, 6, generator=g) * 1.5 + 4.0 * onehot

    return {"out": logits(), "aux": logits()}, {"out": logits(), "aux": logits()}, target


@pytest.mark.parametrize("iteration", [0, 2, 3, 20], ids=["tfe-first", "tfe-last", "tse-first", "tse"])
@pytest.mark.parametrize("min_kept", [50, 2600], ids=["floor-idle", "floor-binding"])
def test_official_preset_equals_the_official_script(iteration, min_kept):
    student, teacher, target = _batch(iteration + min_kept)
    criterion = RDDLoss(TOTAL, tfe_fraction=WARMUP / TOTAL, preset="official", min_kept=min_kept,
                        class_weights=list(CITYSCAPES_CLASS_WEIGHTS))
    out = criterion(student, teacher, target, iteration)
    expected, raised = official_iteration_loss(student, teacher, target, iteration, min_kept)
    assert out.stage == ("tfe" if iteration + 1 < WARMUP else "tse")
    assert out.total.item() == pytest.approx(expected, abs=1e-5)
    if out.stage == "tse":  # the two cases really exercise the OHEM floor idle and binding
        assert raised == (min_kept == 2600)
        assert 0.0 < out.terms["selected"].item() < 1.0


def test_class_weights_apply_in_tse_only():
    student, teacher, target = _batch(7)
    weighted = RDDLoss(TOTAL, tfe_fraction=0.1, preset="official", class_weights=[3.0] * 10 + [0.1] * 9, min_kept=50)
    plain = RDDLoss(TOTAL, tfe_fraction=0.1, preset="official", min_kept=50)
    tfe = [c(student, teacher, target, 0).total.item() for c in (weighted, plain)]
    tse = [c(student, teacher, target, 10).total.item() for c in (weighted, plain)]
    assert tfe[0] == pytest.approx(tfe[1], abs=1e-7) and tse[0] != pytest.approx(tse[1], abs=1e-4)
