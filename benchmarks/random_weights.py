"""Random-init checkpoints for the benchmarks whose numbers (latency, throughput) do not depend on weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdd_deploy.checkpoint import save_checkpoint
from rdd_deploy.models import build_model
from rdd_deploy.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD


def random_checkpoint(path: Path, spec: dict[str, Any], class_names: Sequence[str], crop_size: tuple[int, int]) -> Path:
    """Save a randomly initialised `spec` model (name, aux_head, head_channels, width_mult) as a checkpoint."""
    spec = {**spec, "num_classes": len(class_names)}
    meta = {"class_names": list(class_names), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "ignore_index": 255, "dataset": "synthetic", "crop_size": list(crop_size), "miou": None}
    return save_checkpoint(path, {"model_spec": spec, "model": build_model(**spec).state_dict(), "meta": meta})
