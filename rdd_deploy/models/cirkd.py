"""`rdd-deploy convert --from cirkd`: an official RDD/CIRKD state dict -> an rdd-deploy checkpoint.

The official files are raw state dicts (keys `pretrained.*`, `head.*`, `auxlayer.*`; DESIGN.md section 8).
Every key is renamed to the official variant of our model, the head width is read from the tensors (RDD's
2022 files: 256 for ResNet-101, 128 otherwise; CIRKD since 2025: 512), and every tensor must fit exactly.
The checkpoint records the official input convention (BGR, Caffe mean, std 1 in 0-255, align_corners=True).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rdd_deploy.errors import RDDError
from rdd_deploy.models.pretrained import csail_mobilenet_key
from rdd_deploy.models.registry import MODELS, build_model
from rdd_deploy.runtime.preprocess import NORMALIZATIONS

SOURCES = ("cirkd",)
OFFICIAL_NORMALIZATION = "caffe"
Rule = tuple[str, Callable[[re.Match], str]]

_BACKBONE_RULES: list[Rule] = [
    (r"pretrained\.net\.(features\..+)", lambda m: "backbone." + csail_mobilenet_key(m[1])),
    (r"pretrained\.((conv|bn)[123]|layer[1-4])\.(.+)", lambda m: f"backbone.{m[1]}.{m[3]}"),
    (r"auxlayer\.block\.4\.(.+)", lambda m: f"aux_head.classifier.{m[1]}"),
    (r"auxlayer\.block\.([01])\.(.+)", lambda m: f"aux_head.block.0.{m[1]}.{m[2]}"),
]
_DEEPLAB_RULES: list[Rule] = [
    (r"head\.aspp\.b0\.([01])\.(.+)", lambda m: f"head.aspp.branches.0.{m[1]}.{m[2]}"),
    (r"head\.aspp\.b([123])\.block\.([01])\.(.+)", lambda m: f"head.aspp.branches.{m[1]}.{m[2]}.{m[3]}"),
    (r"head\.aspp\.b4\.gap\.([12])\.(.+)", lambda m: f"head.aspp.image_pool.{int(m[1]) - 1}.{m[2]}"),
    (r"head\.aspp\.project\.([01])\.(.+)", lambda m: f"head.aspp.project.0.{m[1]}.{m[2]}"),
    (r"head\.block\.4\.(.+)", lambda m: f"head.classifier.{m[1]}"),
    (r"head\.block\.([01])\.(.+)", lambda m: f"head.block.{m[1]}.{m[2]}"),
]
_PSP_RULES: list[Rule] = [
    (r"head\.psp\.conv([1-4])\.([01])\.(.+)", lambda m: f"head.ppm.stages.{int(m[1]) - 1}.{m[2]}.{m[3]}"),
    (r"head\.block\.([01])\.(.+)", lambda m: f"head.block.0.{m[1]}.{m[2]}"),
    (r"head\.classifier\.(.+)", lambda m: f"head.classifier.{m[1]}"),
]
# per model: its renaming rules, the tensor whose first dimension is the head width, and the classifier
_LAYOUTS = {
    "deeplabv3": (_DEEPLAB_RULES, "head.aspp.b0.0.weight", "head.block.4.weight"),
    "pspnet": (_PSP_RULES, "head.block.0.weight", "head.classifier.weight"),
}


def official_key(key: str, model_name: str) -> str | None:
    """Our name for an official tensor name, None when the key has no counterpart."""
    rules = _BACKBONE_RULES + _LAYOUTS[model_name.split("_")[0]][0]
    for pattern, rename in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return rename(match)
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A raw state dict file (a DDP `module.` prefix or a {'state_dict': ...} wrapper is tolerated)."""
    if not path.is_file():
        raise RDDError(f"file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickled objects, another format
        raise RDDError(f"cannot read {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RDDError(f"{path} is not a raw state dict of tensors (what the official code saves)")
    return {key.removeprefix("module."): value for key, value in state.items()}


def convert_state_dict(state: dict[str, torch.Tensor], model_name: str, num_classes: int,
                       source: str = "state dict") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(model_spec, state dict) of the official variant of `model_name` holding the official tensors."""
    if model_name not in MODELS or MODELS[model_name].official is None:
        official = ", ".join(name for name, arch in sorted(MODELS.items()) if arch.official is not None)
        raise RDDError(f"no official model '{model_name}' to convert to; choose one of: {official}")
    _, width_key, classifier_key = _LAYOUTS[model_name.split("_")[0]]
    for key in (width_key, classifier_key):
        if key not in state:
            raise RDDError(f"{source} is not an official {model_name} state dict: it has no tensor '{key}'")
    if state[classifier_key].shape[0] != num_classes:
        raise RDDError(f"{source} predicts {state[classifier_key].shape[0]} classes ('{classifier_key}'), "
                       f"--num-classes says {num_classes}")
    spec = {"name": model_name, "num_classes": num_classes, "aux_head": any(k.startswith("auxlayer.") for k in state),
            "head_channels": int(state[width_key].shape[0]), "width_mult": 1.0, "variant": "official"}
    own = build_model(**spec).state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = official_key(key, model_name)
        if target is None or target not in own:
            raise RDDError(f"{source}: tensor '{key}' has no counterpart in the official {model_name}")
        if own[target].shape != value.shape:
            raise RDDError(f"{source}: tensor '{key}' has shape {tuple(value.shape)}, the official {model_name} "
                           f"(head width {spec['head_channels']}) expects {tuple(own[target].shape)}")
        renamed[target] = value
    missing = [key for key in own if key not in renamed]
    if missing:
        raise RDDError(f"{source} lacks {len(missing)} tensors of the official {model_name}, "
                       f"the first is our '{missing[0]}'")
    return spec, renamed


def convert_cirkd(src: str | Path, model_name: str, num_classes: int, out: str | Path,
                  dataset: str | None = None) -> Path:
    """Convert an official RDD/CIRKD state dict file into an rdd-deploy checkpoint at `out`."""
    from rdd_deploy.checkpoint import save_checkpoint
    from rdd_deploy.data import DATASETS

    src = Path(src)
    spec, state = convert_state_dict(read_state_dict(src), model_name, num_classes, str(src))
    class_names: list[str] = [f"class_{i}" for i in range(num_classes)]
    palette = None
    if dataset is not None:
        known = [name for name, reader in DATASETS.items() if reader.info is not None]
        if dataset not in known:
            raise RDDError(f"--dataset takes a built-in data set's name ({', '.join(known)}), not '{dataset}'")
        info = DATASETS[dataset].info
        if info.num_classes != num_classes:
            raise RDDError(f"{dataset} has {info.num_classes} classes, --num-classes says {num_classes}")
        class_names, palette = list(info.class_names), [list(c) for c in info.palette]
    channel_order, mean, std = NORMALIZATIONS[OFFICIAL_NORMALIZATION]
    meta = {"class_names": class_names, "palette": palette, "channel_order": channel_order, "mean": list(mean),
            "std": list(std), "align_corners": True, "ignore_index": 255, "dataset": dataset, "crop_size": None,
            "miou": None, "converted_from": f"cirkd:{src.name}"}
    return save_checkpoint(out, {"model_spec": spec, "model": state, "meta": meta})
