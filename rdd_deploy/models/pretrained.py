"""ImageNet weights for a backbone: torchvision's (fetched through its weights API) or a local state dict file.

A local file may use torchvision's layout or the CSAIL semantic-segmentation layout that the official code's
ImageNet files (resnet18-imagenet.pth, resnet101-imagenet.pth, mobilenetv2-imagenet.pth) use.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdd_deploy.errors import RDDError

log = logging.getLogger(__name__)

_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "features.18.")
# torchvision's ImageNet weights per model family (the weights enum's name, looked up in torchvision.models)
_TORCHVISION_WEIGHTS = {"r101": "ResNet101_Weights", "r50": "ResNet50_Weights", "r18": "ResNet18_Weights",
                        "mbv2": "MobileNet_V2_Weights"}
# CSAIL MobileNetV2 block layout -> torchvision's: Sequential indices of block 1 (no expansion) and blocks >= 2
_CSAIL_MBV2_BLOCK1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_CSAIL_MBV2_BLOCKS = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_CSAIL_MBV2_KEY = re.compile(r"features\.(\d+)\.conv\.(\d+)\.(.+)")


def csail_mobilenet_key(key: str) -> str:
    """A CSAIL/official MobileNetV2 key ("features.N.conv.K.*") in torchvision's naming; other keys unchanged."""
    match = _CSAIL_MBV2_KEY.fullmatch(key)
    if match is None:
        return key
    block, index, rest = match.groups()
    table = _CSAIL_MBV2_BLOCK1 if block == "1" else _CSAIL_MBV2_BLOCKS
    if index not in table:
        raise RDDError(f"tensor '{key}' does not fit the CSAIL MobileNetV2 layout (no layer {index} in block {block})")
    return f"features.{block}.conv.{table[index]}.{rest}"


def load_backbone_weights(backbone: nn.Module, pretrained: str | Path, model_name: str = "",
                          variant: str = "default") -> tuple[list[str], list[str]]:
    """Load ImageNet weights into `backbone` ("imagenet" or a file path); return (missing, unexpected) keys."""
    if str(pretrained) == "imagenet":
        return _load_state(backbone, torchvision_imagenet(model_name, variant), f"torchvision {model_name}")
    return _load_state(backbone, _read_state(Path(pretrained)), str(pretrained))


def torchvision_imagenet(model_name: str, variant: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet state dict for the model's backbone, from the torch hub cache or downloaded there."""
    import torchvision.models

    family = model_name.rsplit("_", 1)[-1]
    if family not in _TORCHVISION_WEIGHTS:
        raise RDDError(f"no torchvision ImageNet weights for model '{model_name}'")
    if variant == "official" and family != "mbv2":
        raise RDDError(f"torchvision has no deep-stem ResNet: the official variant of {model_name} needs the CSAIL "
                       f"ImageNet file (resnet{family[1:]}-imagenet.pth, as the official code uses) in "
                       "model.pretrained")
    weights = getattr(torchvision.models, _TORCHVISION_WEIGHTS[family]).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=False, weights_only=True)
    except Exception as exc:  # urllib raises URLError/HTTPError/socket errors; torch.load its own types
        raise RDDError(f"cannot get torchvision's ImageNet weights {weights.url} ({exc.__class__.__name__}); "
                       f"offline, download that file and put it at {cached}") from None


def _read_state(path: Path) -> dict[str, Any]:
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
    return state


def _load_state(backbone: nn.Module, state: dict[str, Any], source: str) -> tuple[list[str], list[str]]:
    state = {key.removeprefix("module."): value for key, value in state.items()
             if not key.removeprefix("module.").startswith(_CLASSIFIER_PREFIXES)}
    if any(".conv.6." in key for key in state):  # only the CSAIL MobileNetV2 layout has a layer 6 in its blocks
        state = {csail_mobilenet_key(key): value for key, value in state.items()}
    own = backbone.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            hint = (" (a CSAIL deep-stem file such as resnet18-imagenet.pth fits variant official, "
                    "a torchvision file the default variant)") if key.startswith("conv1.") else ""
            raise RDDError(f"{source}: tensor '{key}' has shape {tuple(value.shape)}, "
                           f"the backbone expects {tuple(own[key].shape)}{hint}")
    matched = [key for key in state if key in own]
    if not matched:
        raise RDDError(f"{source}: none of its {len(state)} tensors match the backbone; expected a torchvision or "
                       "CSAIL ResNet or MobileNetV2 ImageNet state dict")
    result = backbone.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        log.warning("pretrained %s: %d missing keys (%s...), %d unexpected keys (%s...)", source, len(missing),
                    missing[:3], len(result.unexpected_keys), result.unexpected_keys[:3])
    return missing, list(result.unexpected_keys)
