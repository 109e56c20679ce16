"""The model factory: `build_model(name, ...)` and `list_models()`; one plain table of architectures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from rdd_deploy.errors import RDDError
from rdd_deploy.models.backbones import MobileNetV2Backbone, ResNetBackbone, ResNetV1sBackbone
from rdd_deploy.models.heads import DeepLabV3Head, FCNHead, PSPHead
from rdd_deploy.models.pretrained import load_backbone_weights
from rdd_deploy.models.segmentor import Segmentor


VARIANTS = ("default", "official")


@dataclass(frozen=True)
class Official:
    """The official code's version of a model (DESIGN.md section 8): its backbone and its head width."""

    backbone: Callable[..., nn.Module]
    head_channels: int


@dataclass(frozen=True)
class Architecture:
    """How to build one registered model; `official` is None where the official code has no such model."""

    backbone: Callable[..., nn.Module]
    head: type[nn.Module]
    aux_by_default: bool
    description: str
    official: Official | None = None


MODELS: dict[str, Architecture] = {
    "deeplabv3_r101": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(101, width_mult), DeepLabV3Head, True,
                                   "teacher: DeepLabV3, ResNet-101, OS8, aux FCN head on layer3",
                                   Official(lambda **kw: ResNetV1sBackbone(101), 256)),
    "deeplabv3_r50": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(50, width_mult), DeepLabV3Head, True,
                                  "DeepLabV3, ResNet-50, OS8"),
    "deeplabv3_r18": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(18, width_mult), DeepLabV3Head, False,
                                  "student: DeepLabV3, ResNet-18, OS8",
                                  Official(lambda **kw: ResNetV1sBackbone(18), 128)),
    "deeplabv3_mbv2": Architecture(lambda width_mult=1.0, **kw: MobileNetV2Backbone(width_mult), DeepLabV3Head,
                                   False, "student: DeepLabV3, MobileNetV2, OS8",
                                   Official(lambda width_mult=1.0, **kw: MobileNetV2Backbone(width_mult, True), 128)),
    "pspnet_r18": Architecture(lambda width_mult=1.0, **kw: ResNetBackbone(18, width_mult), PSPHead, False,
                               "student: PSPNet (bins 1/2/3/6), ResNet-18, OS8",
                               Official(lambda **kw: ResNetV1sBackbone(18), 128)),
    "pspnet_mbv2": Architecture(lambda width_mult=1.0, **kw: MobileNetV2Backbone(width_mult), PSPHead, False,
                                "PSPNet (bins 1/2/3/6), MobileNetV2, OS8"),
}


def list_models() -> list[str]:
    """Names accepted by `build_model`."""
    return sorted(MODELS)


def model_variants(name: str) -> tuple[str, ...]:
    """The variants `build_model` accepts for `name`."""
    return VARIANTS if MODELS[name].official is not None else VARIANTS[:1]


def build_model(name: str, num_classes: int, aux_head: bool | None = None, pretrained: str | Path | None = None,
                head_channels: int | None = None, width_mult: float = 1.0, variant: str = "default") -> Segmentor:
    """Build a registered model.

    variant "official" is the architecture the paper's numbers were measured with (deep-stem ResNet, official
    dilations, head widths 128/256, its dropouts, align_corners=True resizes). `pretrained` is "imagenet"
    (torchvision's weights) or a local ImageNet state dict for the backbone; head_channels None: 256, or the
    official width.
    """
    if name not in MODELS:
        raise RDDError(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")
    if variant not in model_variants(name):
        raise RDDError(f"model '{name}' has no variant '{variant}'; choose one of: {', '.join(model_variants(name))}")
    if num_classes < 1:
        raise RDDError(f"num_classes must be >= 1, got {num_classes}")
    arch = MODELS[name]
    official = arch.official if variant == "official" else None
    if official is not None and width_mult != 1.0 and "mbv2" not in name:
        raise RDDError(f"the official variant of {name} has one width: width_mult must be 1.0, got {width_mult}")
    backbone = (official or arch).backbone(width_mult=width_mult)
    if pretrained is not None:
        load_backbone_weights(backbone, pretrained, name, variant)
    with_aux = arch.aux_by_default if aux_head is None else aux_head
    channels = head_channels or (official.head_channels if official else 256)
    head = arch.head(backbone.channels[-1], num_classes, channels, official=official is not None)
    aux = FCNHead(backbone.channels[2], num_classes) if with_aux else None
    return Segmentor(backbone, head, aux, align_corners=official is not None)
