"""AT and CWD against independent float64 computations, and how each method composes its objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdd_deploy.distill.config import DistillConfig
from rdd_deploy.distill.distillers import at_loss, cwd_loss
from rdd_deploy.distill.losses import RDDLoss, kd_loss, task_loss
from rdd_deploy.distill.objective import Objective


def _at_reference(s: np.ndarray, t: np.ndarray) -> float:
    def attention(f: np.ndarray) -> np.ndarray:
        a = (f.astype(np.float64) ** 2).mean(axis=1).reshape(f.shape[0], -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    return float(((attention(s) - attention(t)) ** 2).mean())


def test_at_loss_matches_reference_and_ignores_channel_counts() -> None:
    rng = np.random.default_rng(0)
    pairs = [(rng.normal(size=(2, 4, 3, 5)), rng.normal(size=(2, 16, 3, 5))),
             (rng.normal(size=(2, 8, 3, 5)), rng.normal(size=(2, 32, 3, 5)))]
    expected = sum(_at_reference(s, t) for s, t in pairs)
    got = at_loss([torch.tensor(s, dtype=torch.float32) for s, _ in pairs],
                  [torch.tensor(t, dtype=torch.float32) for _, t in pairs])
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_at_loss_is_zero_for_proportional_features() -> None:
    features = torch.randn(2, 6, 4, 4)
    assert at_loss([features], [3.0 * features.repeat(1, 2, 1, 1)]).item() == pytest.approx(0.0, abs=1e-9)


def test_cwd_loss_matches_per_channel_spatial_kl() -> None:
    rng = np.random.default_rng(1)
    s, t, temperature = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5)), 4.0
    total = 0.0
    for n in range(2):
        for c in range(3):
            ps = np.exp(s[n, c].ravel() / temperature)
            pt = np.exp(t[n, c].ravel() / temperature)
            ps, pt = ps / ps.sum(), pt / pt.sum()
            total += float((pt * np.log(pt / ps)).sum())
    expected = total * temperature**2 / (2 * 3)
    got = cwd_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), temperature)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_distillers_send_gradients_to_the_student_only() -> None:
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4, requires_grad=True)
    (cwd_loss(student, teacher) + at_loss([student], [teacher])).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0 and teacher.grad is None


def _outputs(seed: int, classes: int = 5) -> tuple[dict, dict, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    def logits(): return torch.randn(2, classes, 4, 4, generator=generator)
    def stages(): return [torch.randn(2, c, 4, 4, generator=generator) for c in (4, 8, 16, 32)]
    student = {"out": logits(), "features": stages()}
    teacher = {"out": logits(), "aux": logits(), "features": stages()}
    target = torch.randint(0, classes, (2, 32, 32), generator=generator)
    return student, teacher, target


@pytest.mark.parametrize("iteration", [0, 99])
def test_each_method_is_the_sum_of_its_terms(iteration: int) -> None:
    student, teacher, target = _outputs(0)
    ce = task_loss(student["out"], target)
    t_out = teacher["out"]
    expected = {
        "ce": ce,
        "kd": ce + kd_loss(student["out"], t_out),
        "rdd": RDDLoss(100)(student, teacher, target, iteration).total,
        "at": ce + 500.0 * at_loss(student["features"][2:], teacher["features"][2:]),
        "cwd": ce + 3.0 * cwd_loss(student["out"], t_out, 4.0),
        "at+rdd": RDDLoss(100, kd_weight=0.0)(student, teacher, target, iteration).total
        + 500.0 * at_loss(student["features"][2:], teacher["features"][2:]),
        "cwd+rdd": RDDLoss(100, kd_weight=0.0)(student, teacher, target, iteration).total
        + 3.0 * cwd_loss(student["out"], t_out, 4.0),
    }
    for method, value in expected.items():
        objective = Objective(DistillConfig(method=method), total_iters=100)
        result = objective(student, teacher if method != "ce" else None, target, iteration)
        assert result.total.item() == pytest.approx(value.item(), rel=1e-6), method
        assert result.stage == ("-" if "rdd" not in method else ("tfe" if iteration < 10 else "tse"))
        assert objective.needs_teacher == (method != "ce")
        assert objective.needs_features == method.startswith("at")


def test_student_aux_head_adds_weighted_ce() -> None:
    student, _, target = _outputs(1)
    student["aux"] = torch.randn(2, 5, 4, 4)
    result = Objective(DistillConfig(method="ce", aux_weight=0.4), total_iters=10)(student, None, target, 0)
    expected = task_loss(student["out"], target) + 0.4 * task_loss(student["aux"], target)
    assert result.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(result.terms) == {"task", "aux"}
