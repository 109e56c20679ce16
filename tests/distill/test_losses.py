"""RDD loss terms against hand-computed values and an independent float64 numpy reference."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rdd_deploy.distill.losses import RDDLoss, kd_loss, task_loss, tfe_difficulty, tse_difficulty


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _probs_to_logits(probs: list[list[float]]) -> torch.Tensor:
    """Pixels given as class-probability lists -> logits [1, C, 1, P] (log p is a valid logit)."""
    return torch.tensor(np.log(np.array(probs, dtype=np.float64)).T[None, :, None, :], dtype=torch.float32)


def test_kd_loss_matches_hand_computed_kl():
    student = torch.tensor([[[[0.0]], [[0.0]]]])  # p_s = (0.5, 0.5)
    teacher = torch.tensor([[[[math.log(3.0)]], [[0.0]]]])  # p_t = (0.75, 0.25)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kd_loss(student, teacher).item() == pytest.approx(expected, abs=1e-6)


def test_kd_loss_temperature_scales_logits_and_multiplies_t_squared():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(2, 5, 3, 4)), rng.normal(size=(2, 5, 3, 4))
    temperature = 4.0
    ps, pt = _softmax(s / temperature), _softmax(t / temperature)
    expected = (pt * (np.log(pt) - np.log(ps))).sum(axis=1).mean() * temperature**2
    got = kd_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), temperature)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_tfe_difficulty_is_exp_minus_kl_in_both_directions():
    rng = np.random.default_rng(1)
    main, aux = rng.normal(size=(2, 4, 3, 3)), rng.normal(size=(2, 4, 3, 3))
    pm, pa = _softmax(main), _softmax(aux)
    main_aux = np.exp(-(pm * (np.log(pm) - np.log(pa))).sum(axis=1))
    aux_main = np.exp(-(pa * (np.log(pa) - np.log(pm))).sum(axis=1))
    tm, ta = torch.tensor(main, dtype=torch.float32), torch.tensor(aux, dtype=torch.float32)
    got = tfe_difficulty(tm, ta)
    assert got.shape == (2, 3, 3)
    np.testing.assert_allclose(got.numpy(), main_aux, atol=1e-6)
    np.testing.assert_allclose(tfe_difficulty(tm, ta, direction="aux_main").numpy(), aux_main, atol=1e-6)
    assert float(got.min()) > 0 and float(got.max()) <= 1
    assert tfe_difficulty(tm, tm).numpy() == pytest.approx(1.0, abs=1e-6)


# Four pixels: (student, teacher) easy/easy, hard/easy, easy/hard, hard/hard at t = 0.7.
STUDENT = [[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.55, 0.45]]
TEACHER = [[0.95, 0.05], [0.85, 0.15], [0.5, 0.5], [0.65, 0.35]]


@pytest.mark.parametrize("mode, expected", [("xor", [0, 1, 1, 0]), ("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1])])
def test_tse_difficulty_modes(mode, expected):
    rd = tse_difficulty(_probs_to_logits(STUDENT), _probs_to_logits(TEACHER), threshold=0.7, mode=mode)
    assert rd.dtype == torch.float32
    assert rd.flatten().tolist() == expected


def test_tse_target_confidence_uses_label_class_and_zeroes_ignored_pixels():
    # Labels make pixel 0 hard for both (p=0.1/0.05) and pixel 1 hard for the student only; pixel 3 is ignored.
    target = torch.tensor([[[1, 1, 0, 255]]])
    rd = tse_difficulty(_probs_to_logits(STUDENT), _probs_to_logits(TEACHER), confidence="target", target=target)
    # student conf of label: 0.1, 0.4, 0.8, -; teacher: 0.05, 0.15, 0.5, - -> hard_s 1,1,0  hard_t 1,1,1
    assert rd.flatten().tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="needs the labels"):
        tse_difficulty(_probs_to_logits(STUDENT), _probs_to_logits(TEACHER), confidence="target")


def _reference_rdd(student, teacher, target, stage, teacher_aux=None, ignore=255):
    """Paper preset computed in float64 numpy from the definitions in DESIGN.md section 2."""
    ps, pt = _softmax(student), _softmax(teacher)
    valid = target != ignore
    safe = np.where(valid, target, 0)
    ce = -np.log(np.take_along_axis(ps, safe[:, None], axis=1)[:, 0]) * valid
    if stage == "tfe":
        pa = _softmax(teacher_aux)
        rd = np.exp(-(pt * (np.log(pt) - np.log(pa))).sum(axis=1))
    else:
        rd = ((ps.max(axis=1) <= 0.7) ^ (pt.max(axis=1) <= 0.7)) & valid
    task = (rd * ce).sum() / max(valid.sum(), 1)
    kd = (pt * (np.log(pt) - np.log(ps))).sum(axis=1).mean()
    return task + kd, task, kd


@pytest.mark.parametrize("stage, iteration", [("tfe", 0), ("tse", 5)])
def test_rdd_loss_paper_preset_matches_reference(stage, iteration):
    rng = np.random.default_rng(2)
    s, t, a = (rng.normal(scale=2.0, size=(2, 3, 4, 5)) for _ in range(3))
    target = rng.integers(0, 3, size=(2, 4, 5))
    target[0, 0, :3] = 255
    criterion = RDDLoss(total_iters=50, tfe_fraction=0.1)
    out = criterion({"out": torch.tensor(s, dtype=torch.float32)},
                    {"out": torch.tensor(t, dtype=torch.float32), "aux": torch.tensor(a, dtype=torch.float32)},
                    torch.tensor(target), iteration)
    total, task, kd = _reference_rdd(s, t, target, stage, a)
    assert out.stage == stage
    assert out.total.item() == pytest.approx(total, abs=1e-6)
    assert out.terms["task"].item() == pytest.approx(task, abs=1e-6)
    assert out.terms["kd"].item() == pytest.approx(kd, abs=1e-6)


def test_stage_switch_at_exact_iteration():
    criterion = RDDLoss(total_iters=40000, tfe_fraction=0.1)
    assert criterion.stage(3999) == "tfe" and criterion.stage(4000) == "tse"
    # The official loop counts from 1 and tests `iteration < warmup_iter`: 3,999 TFE steps for warmup 4,000.
    official = RDDLoss(total_iters=40000, tfe_fraction=0.1, preset="official")
    assert official.stage(3998) == "tfe" and official.stage(3999) == "tse"
    assert RDDLoss(total_iters=100, tfe_fraction=0.0).stage(0) == "tse"


def _up(x: torch.Tensor, size=(16, 24), align_corners: bool = False) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def test_tse_at_one_eighth_compares_upsampled_confidence_maps():
    # Paper preset: each network's log max-probability is taken at its own (1/8) resolution and upsampled as one
    # channel, as TFE does with RD; CE is on the upsampled student logits.
    torch.manual_seed(0)
    s, t = torch.randn(1, 3, 2, 3) * 2, torch.randn(1, 3, 2, 3) * 2
    target = torch.randint(0, 3, (1, 16, 24))
    target[0, :2] = 255
    out = RDDLoss(total_iters=10, tfe_fraction=0.0, kd_weight=0.0)({"out": s}, {"out": t}, target, 5)
    log_conf = lambda x: _up(F.log_softmax(x, 1).max(1, keepdim=True).values)[:, 0]  # noqa: E731
    valid = target != 255
    rd = ((log_conf(s) <= math.log(0.7)) ^ (log_conf(t) <= math.log(0.7))) & valid
    ce = F.cross_entropy(_up(s), target, ignore_index=255, reduction="none")
    assert 0 < rd.sum() < valid.sum()  # the example selects some pixels, not all
    assert out.terms["task"].item() == pytest.approx(((rd * ce).sum() / valid.sum()).item(), abs=1e-6)


@pytest.mark.parametrize("preset, iteration", [("paper", 0), ("official", 0), ("official", 5)])
def test_tfe_and_official_tse_at_one_eighth_equal_the_upsampled_computation(preset, iteration):
    torch.manual_seed(0)
    s, t, a = torch.randn(1, 3, 2, 3), torch.randn(1, 3, 2, 3), torch.randn(1, 3, 2, 3)
    target = torch.randint(0, 3, (1, 16, 24))
    criterion = RDDLoss(total_iters=20, preset=preset, kd_weight=0.0, min_kept=0)
    low = criterion({"out": s}, {"out": t, "aux": a}, target, iteration).total
    corners = preset == "official"  # the official code resizes with align_corners=True
    if iteration == 0:  # TFE: RD is computed at 1/8 and upsampled
        rd = _up(tfe_difficulty(t, a, "aux_main" if corners else "main_aux")[:, None], align_corners=corners)[:, 0]
        ce = F.cross_entropy(_up(s, align_corners=corners), target, reduction="none")
        assert low.item() == pytest.approx((rd * ce).mean().item(), abs=1e-6)
    else:  # official TSE upsamples the logits themselves
        up = lambda x: _up(x, align_corners=True)  # noqa: E731
        full = criterion({"out": up(s)}, {"out": up(t), "aux": up(a)}, target, iteration).total
        assert low.item() == pytest.approx(full.item(), abs=1e-6)


def test_empty_selection_and_all_ignored_batch_give_finite_loss_and_gradients():
    student = _probs_to_logits([[0.9, 0.1]] * 4).requires_grad_(True)
    teacher = _probs_to_logits([[0.95, 0.05]] * 4)
    for preset in ("paper", "official"):
        criterion = RDDLoss(total_iters=10, tfe_fraction=0.0, preset=preset, min_kept=0)
        for target in (torch.zeros(1, 1, 4, dtype=torch.long), torch.full((1, 1, 4), 255)):
            out = criterion({"out": student}, {"out": teacher}, target, 3)
            assert out.terms["selected"].item() == 0.0
            assert out.terms["task"].item() == 0.0
            out.total.backward()
            assert torch.isfinite(out.total) and torch.isfinite(student.grad).all()
            student.grad = None


def test_gradients_reach_student_but_never_teacher():
    torch.manual_seed(1)
    student = torch.randn(2, 4, 3, 3, requires_grad=True)
    teacher = torch.randn(2, 4, 3, 3, requires_grad=True)
    teacher_aux = torch.randn(2, 4, 3, 3, requires_grad=True)
    target = torch.randint(0, 4, (2, 3, 3))
    for iteration in (0, 9):
        out = RDDLoss(total_iters=10)({"out": student}, {"out": teacher, "aux": teacher_aux}, target, iteration)
        out.total.backward()
        assert student.grad is not None and student.grad.abs().sum() > 0
        assert teacher.grad is None and teacher_aux.grad is None
        student.grad = None


def test_half_precision_inputs_compute_in_float32():
    torch.manual_seed(2)
    s, t, a = (torch.randn(2, 5, 4, 4) for _ in range(3))
    target = torch.randint(0, 5, (2, 8, 8))
    criterion = RDDLoss(total_iters=10)
    for iteration in (0, 5):
        full = criterion({"out": s}, {"out": t, "aux": a}, target, iteration).total
        half = criterion({"out": s.half()}, {"out": t.half(), "aux": a.half()}, target, iteration).total
        assert half.dtype == torch.float32
        assert half.item() == pytest.approx(full.item(), rel=5e-3)
    assert kd_loss(s.half(), t.half()).dtype == torch.float32


def test_official_preset_ohem_threshold_keeps_min_kept_pixels_and_averages_over_selection():
    # Every pixel is confident (p(label) = 0.9 > 0.7) so only the OHEM floor can select pixels.
    probs_s = [[0.9, 0.1], [0.92, 0.08], [0.94, 0.06], [0.96, 0.04]]
    probs_t = [[0.99, 0.01], [0.97, 0.03], [0.95, 0.05], [0.93, 0.07]]
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    criterion = RDDLoss(total_iters=10, tfe_fraction=0.0, preset="official", min_kept=2, kd_weight=0.0)
    out = criterion({"out": _probs_to_logits(probs_s)}, {"out": _probs_to_logits(probs_t)}, target, 5)
    # hard_s = two least confident student pixels {0, 1}; hard_t = {2, 3}; xor selects all four.
    assert out.terms["selected"].item() == pytest.approx(1.0)
    expected = np.mean([-math.log(p[0]) for p in probs_s])
    assert out.terms["task"].item() == pytest.approx(expected, abs=1e-6)


def test_official_tfe_averages_over_all_pixels_and_weights_student_aux():
    rng = np.random.default_rng(3)
    s, s_aux, t, t_aux = (rng.normal(size=(1, 3, 2, 2)) for _ in range(4))
    target = np.array([[[0, 1], [2, 255]]])
    as_t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    out = RDDLoss(total_iters=20, preset="official", kd_weight=0.0)(  # TFE: 1-based iteration 1 < 2
        {"out": as_t(s), "aux": as_t(s_aux)}, {"out": as_t(t), "aux": as_t(t_aux)}, torch.tensor(target), 0)
    pt, pa = _softmax(t), _softmax(t_aux)
    rd = np.exp(-(pa * (np.log(pa) - np.log(pt))).sum(axis=1))  # KL(p_aux || p_main)
    valid = target != 255
    safe = np.where(valid, target, 0)

    def weighted_ce(logits):
        ce = -np.log(np.take_along_axis(_softmax(logits), safe[:, None], axis=1)[:, 0]) * valid
        return (rd * ce).sum() / target.size  # ignored pixels count in the denominator

    assert out.total.item() == pytest.approx(weighted_ce(s) + 0.4 * weighted_ce(s_aux), abs=1e-6)


def test_task_loss_is_mean_ce_over_labelled_pixels_with_optional_class_weights():
    torch.manual_seed(3)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = 255
    assert task_loss(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, ignore_index=255).item(), abs=1e-6)
    weights = torch.tensor([0.5, 1.0, 2.0])
    assert task_loss(logits, target, class_weights=weights).item() == pytest.approx(
        F.cross_entropy(logits, target, weight=weights, ignore_index=255).item(), abs=1e-6)


@pytest.mark.parametrize("kwargs, message", [({"preset": "fancy"}, "preset"), ({"mode": "nand"}, "mode"),
                                             ({"threshold": 1.5}, "threshold"), ({"tfe_fraction": 2.0}, "tfe_fraction")])
def test_invalid_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RDDLoss(total_iters=10, **kwargs)


def test_tfe_without_teacher_aux_head_explains_what_is_missing():
    logits, target = torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="auxiliary head"):
        RDDLoss(total_iters=10)({"out": logits}, {"out": logits}, target, 0)


def test_confidence_option_switches_only_the_tse_confidence_of_the_paper_preset():
    # the same four pixels as above, labelled so that max and target-class confidence select differently
    student, teacher = _probs_to_logits(STUDENT), _probs_to_logits(TEACHER)
    target = torch.tensor([[[1, 1, 0, 0]]])
    criterion = RDDLoss(total_iters=10, tfe_fraction=0.0, kd_weight=0.0, confidence="target")
    out = criterion({"out": student}, {"out": teacher}, target, iteration=0)
    selected = tse_difficulty(student, teacher, target=target, confidence="target")
    assert selected.flatten().tolist() != tse_difficulty(student, teacher).flatten().tolist()
    ce = -torch.log_softmax(student, dim=1).gather(1, target[:, None])[:, 0]
    assert torch.allclose(out.terms["task"], (selected * ce).sum() / target.numel())
    assert RDDLoss(total_iters=10).confidence == "max" and RDDLoss(10, preset="official").confidence == "target"
