"""Dilated (output stride 8) backbones that keep torchvision's parameter names.

Keeping torchvision's names means an ImageNet state dict saved by torchvision loads
as it is. Each backbone returns its stage outputs so heads can pick the last stage
and the auxiliary head the third.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


class DilatedBasicBlock(BasicBlock):
    """torchvision's BasicBlock, which refuses dilation > 1, with dilated 3x3 convolutions.

    `conv2_dilation` (default: `dilation`) lets the official v1b block dilate its two convolutions differently.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer=None,
                 conv2_dilation: int | None = None) -> None:
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, 1, norm_layer)
        conv2_dilation = dilation if conv2_dilation is None else conv2_dilation
        if dilation > 1:
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        if conv2_dilation > 1:
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=conv2_dilation, dilation=conv2_dilation, bias=False)


_RESNET_LAYERS = {18: (DilatedBasicBlock, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3]),
                  101: (Bottleneck, [3, 4, 23, 3])}


class ResNetBackbone(nn.Module):
    """ResNet with strides of layer3/layer4 replaced by dilation 2/4 (output stride 8).

    `width_mult` scales every stage's width (1.0 is torchvision's network, whose ImageNet weights load as
    they are); thinner ResNets are small students that still train fast from scratch on a CPU.
    """

    def __init__(self, depth: int, width_mult: float = 1.0) -> None:
        super().__init__()
        block, layers = _RESNET_LAYERS[depth]
        net = ResNet(block, layers, replace_stride_with_dilation=[False, True, True])
        widths = [max(8, round(64 * width_mult * 2**stage)) for stage in range(4)]
        if width_mult != 1.0:
            net.inplanes, net.dilation = widths[0], 1
            net.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            net.bn1 = nn.BatchNorm2d(widths[0])
            # torchvision's own layer builder, so blocks, names and dilations stay those of width 1.0
            net.layer1 = net._make_layer(block, widths[0], layers[0])
            net.layer2 = net._make_layer(block, widths[1], layers[1], stride=2)
            net.layer3 = net._make_layer(block, widths[2], layers[2], stride=2, dilate=True)
            net.layer4 = net._make_layer(block, widths[3], layers[3], stride=2, dilate=True)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.channels = [width * block.expansion for width in widths]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the outputs of the four stages (strides 4, 8, 8, 8)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c1, c2, c3, self.layer4(c3)]


# Indices into torchvision's MobileNetV2 `features` that end each stage (stride 4, 8, 16, 32 before dilation).
_MBV2_STAGE_ENDS = (3, 6, 13, 17)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 features up to the 320-channel block, dilated after stride 8.

    official=True follows the official code's `_nostride_dilate`: the depthwise convolution that had stride 2
    (blocks 7 and 14) gets half its stage's dilation (1 and 2), the other 3x3 convolutions the full one.
    """

    def __init__(self, width_mult: float = 1.0, official: bool = False) -> None:
        super().__init__()
        features = mobilenet_v2(width_mult=width_mult).features[:18]
        for index, block in enumerate(features):
            dilation = 1 if index < 7 else (2 if index < 14 else 4)
            if dilation == 1:
                continue
            for module in block.modules():
                if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                    rate = dilation // 2 if official and module.stride == (2, 2) else dilation
                    module.stride, module.dilation, module.padding = (1, 1), (rate, rate), (rate, rate)
        self.features = features
        self.channels = [features[end].out_channels for end in _MBV2_STAGE_ENDS]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the outputs of the four stages (strides 4, 8, 8, 8)."""
        stages = []
        start = 0
        for end in _MBV2_STAGE_ENDS:
            for block in self.features[start:end + 1]:
                x = block(x)
            stages.append(x)
            start = end + 1
        return stages


class ResNetV1sBackbone(nn.Module):
    """The official code's ResNet "v1s" (deep stem of three 3x3 convolutions, 128 channels into layer1), OS8.

    Dilation follows its `_make_layer`: the first block of layer3 (layer4) is built with dilation 1 (2) and
    the rest with 2 (4); a BasicBlock puts that first dilation on conv1 and the stage's on conv2.
    Parameter names are the CSAIL ImageNet files' (conv1/bn1/conv2/bn2/conv3/bn3, layerK).
    """

    def __init__(self, depth: int) -> None:
        super().__init__()
        block, layers = _RESNET_LAYERS[depth]
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64)
        self.conv2, self.bn2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False), nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 128
        stages = []
        for planes, blocks, stride, dilation in zip((64, 128, 256, 512), layers, (1, 2, 1, 1), (1, 1, 2, 4)):
            stages.append(_v1s_layer(block, inplanes, planes, blocks, stride, dilation))
            inplanes = planes * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.channels = [64 * block.expansion, 128 * block.expansion, 256 * block.expansion, 512 * block.expansion]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the outputs of the four stages (strides 4, 8, 8, 8)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.maxpool(self.relu(self.bn3(self.conv3(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c1, c2, c3, self.layer4(c3)]


def _v1s_layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int,
               dilation: int) -> nn.Sequential:
    width = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != width:
        downsample = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride, bias=False), nn.BatchNorm2d(width))
    first = max(dilation // 2, 1)
    if block is Bottleneck:  # dilation on its one 3x3 convolution, as torchvision's dilated ResNet
        layers = [Bottleneck(inplanes, planes, stride, downsample, dilation=first)]
        layers += [Bottleneck(width, planes, dilation=dilation) for _ in range(1, blocks)]
    else:
        layers = [DilatedBasicBlock(inplanes, planes, stride, downsample, dilation=first, conv2_dilation=dilation)]
        layers += [DilatedBasicBlock(width, planes, dilation=dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)
