"""Tiny training set-ups: a 32x32 synthetic set and small networks, so a training run takes seconds on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rdd_deploy.checkpoint import save_checkpoint
from rdd_deploy.models import build_model

TINY_DATA = "synthetic:size=32,train=8,val=2"
TINY_MODEL = {"name": "deeplabv3_r18", "head_channels": 16}


def tiny_config(**sections: Any) -> dict[str, Any]:
    """A raw config for a few-second run on the tiny synthetic set; sections given replace/extend the defaults."""
    config = {"name": "tiny", "seed": 0,
              "data": {"dataset": TINY_DATA, "crop_size": [32, 32], "scale_range": [0.75, 1.25], "workers": 0},
              "model": dict(TINY_MODEL),
              "optim": {"iters": 4, "batch_size": 4, "lr": 0.01, "weight_decay": 1e-4},
              "distill": {"method": "ce"}, "eval": {"every": 2}, "log_every": 1, "save_every": 1}
    for key, value in sections.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return config


def write_teacher(path: Path, num_classes: int = 8, seed: int = 0) -> Path:
    """A randomly initialised teacher with an aux head (TFE-RDD needs one), saved as a checkpoint."""
    torch.manual_seed(seed)
    model = build_model("deeplabv3_r18", num_classes, aux_head=True, head_channels=16)
    spec = {"name": "deeplabv3_r18", "num_classes": num_classes, "aux_head": True, "head_channels": 16,
            "width_mult": 1.0}
    meta = {"class_names": [str(i) for i in range(num_classes)], "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225], "ignore_index": 255, "dataset": TINY_DATA, "crop_size": [32, 32],
            "miou": None}
    return save_checkpoint(path, {"model_spec": spec, "model": model.state_dict(), "meta": meta})


@pytest.fixture
def teacher_checkpoint(tmp_path: Path) -> Path:
    """An 8-class teacher checkpoint for the synthetic set."""
    return write_teacher(tmp_path / "teacher.pt")
