"""Training, evaluation and resume on a CUDA GPU: the code paths no CPU run takes (skipped without a GPU).

Each GPU run is compared with a reference that does not share its suspect part: the CPU in float32, or the same
GPU with one setting changed. Tolerances are those of the arithmetic (bf16 keeps 8 bits, fp16 11, TF32 10);
the bugs they guard against (a wrong dtype, a lost RNG or optimizer state, a skipped update) move the numbers
by whole percent. Dropout is off except in the resume test, so that CPU and GPU draw no different masks.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rdd_deploy.checkpoint import load_checkpoint, model_from_checkpoint
from rdd_deploy.data import build_dataset
from rdd_deploy.distill import trainer
from rdd_deploy.distill.config import config_from_dict
from rdd_deploy.distill.evaluate import evaluate_checkpoint, predict_probabilities
from rdd_deploy.models import build_model

from .conftest import TINY_DATA, tiny_config, write_teacher

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-class teacher with an aux head (TFE-RDD reads it)."""
    return write_teacher(tmp_path_factory.mktemp("teacher") / "teacher.pt")


def distill(run_dir: Path, teacher_path: Path, device: str = "cuda", iters: int = 2, resume: bool = False,
            **overrides: Any) -> Path:
    """A tiny RDD run (TFE for the first half, TSE after), dropout off; `overrides` replace config sections."""
    sections: dict[str, Any] = {"model": {"dropout": 0.0}, "optim": {"iters": iters}, "eval": {"every": 100},
                                "distill": {"method": "rdd", "rdd": {"tfe_fraction": 0.5}},
                                "teacher": {"checkpoint": str(teacher_path)}}
    for key, value in overrides.items():
        sections[key] = {**sections.get(key, {}), **value} if isinstance(value, dict) else value
    return trainer.train(config_from_dict(tiny_config(**sections)), run_dir, resume=resume, device=device)


def losses(run_dir: Path) -> dict[int, float]:
    """Iteration -> logged total loss."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["iter"]: r["loss"] for r in records if "loss" in r}


def weights(run_dir: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / name)["model"]


def relative_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> float:
    """|a - b| over the size of b's update from `start`, on the floating-point tensors."""
    keys = [k for k in start if start[k].is_floating_point()]
    gap = sum(((a[k].float() - b[k].float()) ** 2).sum() for k in keys) ** 0.5
    update = sum(((b[k].float() - start[k].float()) ** 2).sum() for k in keys) ** 0.5
    assert update > 0, "the reference run did not change the weights"
    return float(gap / update)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory, teacher: Path) -> Path:
    """The float32 CPU reference of the tiny RDD run."""
    return distill(tmp_path_factory.mktemp("cpu") / "run", teacher, device="cpu", amp="off")


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """Plain float32 convolutions (cuDNN uses TF32 by default; matrix products do not), so two float32 GPU runs
    differ only by summation order."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        yield


def test_bf16_rdd_steps_follow_the_float32_cpu_run(tmp_path: Path, teacher: Path, cpu_run: Path) -> None:
    # Two loader workers with pinned memory, as a GPU run uses them; half-precision teacher (the default).
    run = distill(tmp_path / "bf16", teacher, amp="bf16", data={"workers": 2})
    gpu, cpu = losses(run), losses(cpu_run)
    assert gpu[1] == pytest.approx(cpu[1], rel=2e-2) and gpu[2] == pytest.approx(cpu[2], rel=3e-2)
    trained = weights(run)
    assert all(v.dtype == torch.float32 for v in trained.values() if v.is_floating_point())  # fp32 master weights
    torch.manual_seed(0)
    start = dict(build_model("deeplabv3_r18", 8, head_channels=16).state_dict())
    assert relative_gap(trained, weights(cpu_run), start) < 0.1


def test_fp16_autocast_with_the_grad_scaler_trains(tmp_path: Path, teacher: Path, cpu_run: Path) -> None:
    run = distill(tmp_path / "fp16", teacher, iters=4, amp="fp16")
    logged = losses(run)
    assert logged[1] == pytest.approx(losses(cpu_run)[1], rel=3e-2)
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values())
    scaler = load_checkpoint(run / "last.pt")["train_state"]["scaler"]
    assert 0 < scaler["scale"] <= 2.0**16  # the scaler ran (enabled) and its state is saved for resume
    trained = weights(run)
    torch.manual_seed(0)
    start = build_model("deeplabv3_r18", 8, head_channels=16).state_dict()
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    assert any(not torch.equal(trained[k], start[k]) for k in start if start[k].is_floating_point()), \
        "every step was skipped by the grad scaler"


def test_half_precision_teacher_gives_the_loss_of_the_float32_teacher(tmp_path: Path, teacher: Path,
                                                                      no_tf32: None) -> None:
    half = losses(distill(tmp_path / "half", teacher, amp="off", teacher={"half": True}))
    full = losses(distill(tmp_path / "full", teacher, amp="off", teacher={"half": False}))
    assert half[1] == pytest.approx(full[1], rel=1e-2) and half[2] == pytest.approx(full[2], rel=1e-2)


def test_channels_last_trains_like_the_default_layout(tmp_path: Path, teacher: Path, no_tf32: None) -> None:
    nhwc = distill(tmp_path / "nhwc", teacher, amp="off", channels_last=True, teacher={"half": False})
    nchw = distill(tmp_path / "nchw", teacher, amp="off", channels_last=False, teacher={"half": False})
    assert losses(nhwc)[1] == pytest.approx(losses(nchw)[1], rel=1e-4)
    torch.manual_seed(0)
    start = build_model("deeplabv3_r18", 8, head_channels=16).state_dict()
    assert relative_gap(weights(nhwc), weights(nchw), start) < 1e-2
    model, _ = model_from_checkpoint(nhwc / "best.pt")  # a channels_last run's checkpoint loads as any other
    assert model.head.classifier.out_channels == 8


def test_evaluation_on_the_gpu_scores_like_the_cpu(teacher: Path, no_tf32: None) -> None:
    options = {"scales": (0.75, 1.0), "flip": True}
    cpu = evaluate_checkpoint(teacher, TINY_DATA, device="cpu", **options)
    gpu = evaluate_checkpoint(teacher, TINY_DATA, device="cuda", **options)
    assert gpu["images"] == cpu["images"] == 2
    assert gpu["miou"] == pytest.approx(cpu["miou"], abs=1e-3) and gpu["pixel_acc"] == pytest.approx(cpu["pixel_acc"],
                                                                                                      abs=1e-3)
    model, _ = model_from_checkpoint(teacher)
    image = build_dataset(TINY_DATA, "val")[0][0][None]
    on_cpu = predict_probabilities(model, image, (0.75, 1.0), True)
    on_gpu = predict_probabilities(model.cuda(), image.cuda(), (0.75, 1.0), True).cpu()
    assert torch.allclose(on_gpu, on_cpu, atol=1e-4)
    in_bf16 = predict_probabilities(model, image.cuda(), amp_dtype=torch.bfloat16).cpu()
    assert (in_bf16.argmax(1) == predict_probabilities(model, image.cuda()).cpu().argmax(1)).float().mean() > 0.9


class Interrupted(Exception):
    """Raised right after the checkpoint of a chosen iteration is written."""


def test_resume_on_the_gpu_continues_with_the_same_next_steps(tmp_path: Path, teacher: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # bf16 with dropout on: the next steps depend on the optimizer's momentum, the data position and the CUDA
    # generator's state (dropout masks), all of which last.pt must bring back.
    settings = {"amp": "bf16", "model": {"dropout": 0.1}, "iters": 4, "save_every": 1}
    straight = distill(tmp_path / "straight", teacher, **settings)

    save = trainer.save_checkpoint

    def save_then_stop(path: Path, checkpoint: dict[str, Any]) -> Path:
        written = save(path, checkpoint)
        if checkpoint.get("train_state", {}).get("iteration") == 2:
            raise Interrupted
        return written

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        distill(tmp_path / "resumed", teacher, **settings)
    monkeypatch.undo()
    shutil.copy(tmp_path / "resumed" / "last.pt", tmp_path / "at2.pt")
    at2 = load_checkpoint(tmp_path / "at2.pt")
    assert at2["train_state"]["iteration"] == 2 and at2["train_state"]["rng"][0]["cuda"] is not None
    resumed = distill(tmp_path / "resumed", teacher, resume=True, **settings)

    # Not bit-exact: CUDA's bilinear-upsampling backward accumulates with atomics in no fixed order.
    assert losses(resumed)[3] == pytest.approx(losses(straight)[3], rel=1e-3)
    assert losses(resumed)[4] == pytest.approx(losses(straight)[4], rel=1e-3)
    assert relative_gap(weights(resumed), weights(straight), at2["model"]) < 1e-2

