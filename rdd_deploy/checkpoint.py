"""Checkpoint files: one format for teachers, students and distillation runs.

A checkpoint is a dict that `torch.load(weights_only=True)` can read:
  format      "rdd-deploy/1"
  model_spec  how to rebuild the trained network: build_model(**model_spec)
  model       its state dict (a distillation run stores the student only, never the teacher)
  meta        class_names, mean, std, channel_order (RGB when absent), align_corners, ignore_index, dataset,
              crop_size, miou (None until evaluated)
  train_state optional: optimizer, scaler, iteration, RNG states, config (for --resume)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rdd_deploy.atomic import atomic_path
from rdd_deploy.errors import RDDError
from rdd_deploy.models import Segmentor, build_model

FORMAT = "rdd-deploy/1"
MODEL_SPEC_KEYS = ("name", "num_classes", "aux_head", "head_channels", "width_mult", "variant")
Normalization = tuple[str, tuple[float, ...], tuple[float, ...]]  # (channel order, mean, std) of pixel / 255


def meta_normalization(meta: dict[str, Any]) -> Normalization:
    """The input convention a checkpoint's network expects: channel order, mean and std (ImageNet RGB if absent)."""
    from rdd_deploy.runtime.preprocess import NORMALIZATIONS

    order, mean, std = NORMALIZATIONS["imagenet"]
    return (str(meta.get("channel_order") or order), tuple(meta.get("mean") or mean), tuple(meta.get("std") or std))


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (temp file + rename) and return its path."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **checkpoint}, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True and check its layout; one clear error for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise RDDError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle of arbitrary objects, wrong file type
        raise RDDError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise RDDError(f"{path} is not an rdd-deploy checkpoint (no 'format': '{FORMAT}' entry)")
    for key in ("model_spec", "model", "meta"):
        if key not in checkpoint:
            raise RDDError(f"checkpoint {path} has no '{key}' entry")
    return checkpoint


def model_from_checkpoint(path: str | Path) -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint, in eval mode; return it with the checkpoint's meta."""
    checkpoint = load_checkpoint(path)
    spec = {key: checkpoint["model_spec"][key] for key in MODEL_SPEC_KEYS if key in checkpoint["model_spec"]}
    model = build_model(**spec)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise RDDError(f"checkpoint {path} does not fit model '{spec.get('name')}': {first}") from None
    return model.eval(), dict(checkpoint["meta"])
