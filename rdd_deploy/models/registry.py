"""The model factory: `build_model(name, ...)` and `list_models()`; one plain table of architectures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from rdd_deploy.errors import RDDError
from rdd_deploy.models.backbones import MobileNetV2Backbone, ResNetBackbone
from rdd_deploy.models.heads import DeepLabV3Head, FCNHead, PSPHead
from rdd_deploy.models.pretrained import load_backbone_weights
from rdd_deploy.models.segmentor import Segmentor


@dataclass(frozen=True)
class Architecture:
    """How to build one registered model."""

    backbone: Callable[..., nn.Module]
    head: type[nn.Module]
    aux_by_default: bool
    description: str


MODELS: dict[str, Architecture] = {
    "deeplabv3_r101": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(101, width_mult), DeepLabV3Head, True,
                                   "teacher: DeepLabV3, ResNet-101, OS8, aux FCN head on layer3"),
    "deeplabv3_r50": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(50, width_mult), DeepLabV3Head, True,
                                  "DeepLabV3, ResNet-50, OS8"),
    "deeplabv3_r18": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(18, width_mult), DeepLabV3Head, False,
                                  "student: DeepLabV3, ResNet-18, OS8"),
    "deeplabv3_mbv2": Architecture(lambda width_mult=1.0, **kw: MobileNetV2Backbone(width_mult), DeepLabV3Head,
                                   False, "student: DeepLabV3, MobileNetV2, OS8"),
    "pspnet_r18": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(18, width_mult), PSPHead, False,
                               "student: PSPNet (bins 1/2/3/6), ResNet-18, OS8"),
    "pspnet_mbv2": Architecture(lambda width_mult=1.0, **kw: MobileNetV2Backbone(width_mult), PSPHead, False,
                                "PSPNet (bins 1/2/3/6), MobileNetV2, OS8"),
}


def list_models() -> list[str]:
    """Names accepted by `build_model`."""
    return sorted(MODELS)


def build_model(name: str, num_classes: int, aux_head: bool | None = None, pretrained: str | Path | None = None,
                head_channels: int = 256, width_mult: float = 1.0) -> Segmentor:
    """Build a registered model; `pretrained` is a local torchvision-format ImageNet state dict for the backbone."""
    if name not in MODELS:
        raise RDDError(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")
    if num_classes < 1:
        raise RDDError(f"num_classes must be >= 1, got {num_classes}")
    arch = MODELS[name]
    backbone = arch.backbone(width_mult=width_mult)
    if pretrained is not None:
        load_backbone_weights(backbone, pretrained)
    with_aux = arch.aux_by_default if aux_head is None else aux_head
    head = arch.head(backbone.channels[-1], num_classes, head_channels)
    aux = FCNHead(backbone.channels[2], num_classes) if with_aux else None
    return Segmentor(backbone, head, aux)
