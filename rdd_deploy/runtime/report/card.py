"""The model card: what the model is, what it was trained and checked on, and the host the numbers come from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rdd_deploy.runtime.doctor import collect as host_report
from rdd_deploy.runtime.model_info import ModelInfo, decode_metadata

CHECKPOINT_FIELDS = ("dataset", "crop_size", "miou", "channel_order", "align_corners")


def checkpoint_facts(path: str | os.PathLike) -> dict[str, Any]:
    """Architecture, training data and recipe (with its teacher) as a checkpoint records them; needs PyTorch.

    best.pt keeps no recipe; the trainer's last.pt beside it does, so it is read from there when present.
    """
    from rdd_deploy.checkpoint import load_checkpoint  # torch: only for a checkpoint reference

    checkpoint = load_checkpoint(path)
    facts: dict[str, Any] = {"checkpoint": str(path), "architecture": checkpoint["model_spec"],
                             **{key: checkpoint["meta"].get(key) for key in CHECKPOINT_FIELDS}}
    recipe = (checkpoint.get("train_state") or {}).get("config")
    last = Path(path).with_name("last.pt")
    if recipe is None and last.is_file() and last != Path(path):
        recipe = (load_checkpoint(last).get("train_state") or {}).get("config")
    if recipe is not None:
        facts["recipe"] = {"name": recipe.get("name"), "distill": recipe.get("distill"),
                           "teacher": recipe.get("teacher"), "optim": recipe.get("optim")}
    return facts


def model_card(info: ModelInfo, metadata: dict[str, Any], data: str, data_sha256: str | None, images: int,
               checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """JSON-ready card: the exported model's metadata, the checkpoint's facts, the data set and the host."""
    if all(isinstance(value, str) for value in metadata.values()):  # ONNX metadata_props: JSON-encoded strings
        metadata = decode_metadata(metadata)
    extra = {key: value for key, value in metadata.items() if key not in info.to_dict() and key != "rdd_deploy.format"}
    return {"model_name": info.model_name, "num_classes": info.num_classes, "class_names": list(info.class_names),
            "input_size": list(info.input_size) if info.input_size else None, "input_layout": info.input_layout,
            "channel_order": info.channel_order, "mean": list(info.mean), "std": list(info.std),
            "dynamic": info.dynamic, "export_metadata": extra, "checkpoint": checkpoint,
            "data": {"spec": data, "split": "val", "images": images, "sha256": data_sha256},
            "host": host_report()}
