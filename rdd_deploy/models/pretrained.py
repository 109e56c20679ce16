"""Load a local torchvision-format ImageNet state dict into a backbone (nothing is downloaded)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from rdd_deploy.errors import RDDError

log = logging.getLogger(__name__)

_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "features.18.")


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Copy matching tensors from the file at `path` into `backbone`; return (missing, unexpected) keys."""
    path = Path(path)
    if not path.is_file():
        raise RDDError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise RDDError(f"cannot read pretrained weights {path}: {exc.__class__.__name__}: {exc}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise RDDError(f"{path} does not hold a state dict (found {type(state).__name__})")
    state = {key.removeprefix("module."): value for key, value in state.items()
             if not key.removeprefix("module.").startswith(_CLASSIFIER_PREFIXES)}
    own = backbone.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise RDDError(f"{path}: tensor '{key}' has shape {tuple(value.shape)}, "
                           f"the backbone expects {tuple(own[key].shape)}")
    matched = [key for key in state if key in own]
    if not matched:
        raise RDDError(f"{path}: none of its {len(state)} tensors match the backbone; "
                       "expected a torchvision ResNet or MobileNetV2 ImageNet state dict")
    result = backbone.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        log.warning("pretrained %s: %d missing keys (%s...), %d unexpected keys (%s...)", path.name, len(missing),
                    missing[:3], len(result.unexpected_keys), result.unexpected_keys[:3])
    return missing, list(result.unexpected_keys)
