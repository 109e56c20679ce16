"""Independent re-statements of the official RDD/CIRKD models (DESIGN.md section 8), written for the tests.

Same module tree, so the same state-dict keys, as the files the official code saves: `pretrained.*` (a deep-
stem v1s ResNet or `pretrained.net.features` of a MobileNetV2), `head.*`, `auxlayer.*`. Every resize uses
align_corners=True, as in the official code. Nothing here imports rdd_deploy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cbr(cin: int, cout: int, k: int = 1, d: int = 1, stride: int = 1, act: type[nn.Module] = nn.ReLU) -> list:
    return [nn.Conv2d(cin, cout, k, stride, d * (k // 2), d, bias=False), nn.BatchNorm2d(cout), act()]


class BasicV1b(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, d1, d2, down):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 3, stride, d1, d1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, 1, d2, d2, bias=False), nn.BatchNorm2d(planes)
        self.downsample = down

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class BottleneckV1b(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, d1, d2, down):
        super().__init__()  # d2 (the stage's dilation) is unused by a bottleneck, as in the official code
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, d1, d1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.downsample = down

    def forward(self, x):
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.relu(self.bn3(self.conv3(out)) + (x if self.downsample is None else self.downsample(x)))


class ResNetV1s(nn.Module):
    def __init__(self, block, layers):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64)
        self.conv2, self.bn2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False), nn.BatchNorm2d(128)
        self.cin = 128
        self.layer1 = self._layer(block, 64, layers[0], 1, 1)
        self.layer2 = self._layer(block, 128, layers[1], 2, 1)
        self.layer3 = self._layer(block, 256, layers[2], 1, 2)
        self.layer4 = self._layer(block, 512, layers[3], 1, 4)

    def _layer(self, block, planes, blocks, stride, dilation):
        down = None
        if stride != 1 or self.cin != planes * block.expansion:
            down = nn.Sequential(nn.Conv2d(self.cin, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
        first = 1 if dilation in (1, 2) else 2
        layers = [block(self.cin, planes, stride, first, dilation, down)]
        self.cin = planes * block.expansion
        layers += [block(self.cin, planes, 1, dilation, dilation, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 3, 2, 1)
        c3 = self.layer3(self.layer2(self.layer1(x)))
        return c3, self.layer4(c3)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.residual = stride == 1 and cin == cout
        layers = [] if t == 1 else _cbr(cin, hidden, act=nn.ReLU6)
        layers += _cbr(hidden, hidden, 3, stride=stride, act=nn.ReLU6)
        layers[-3] = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Net(nn.Module):
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]

    def __init__(self):
        super().__init__()
        features, cin = [nn.Sequential(*_cbr(3, 32, 3, stride=2, act=nn.ReLU6))], 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*features)
        for index in range(7, 18):  # output stride 8: stride-2 convs get dilate // 2, the others dilate
            dilate = 2 if index < 14 else 4
            for m in self.features[index].modules():
                if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                    d = dilate // 2 if m.stride == (2, 2) else dilate
                    m.stride, m.dilation, m.padding = (1, 1), (d, d), (d, d)

    def forward(self, x):
        return self.features(x)


class MobileNetV2Dilated(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = MobileNetV2Net()


class ASPPConv(nn.Module):
    def __init__(self, cin, cout, rate):
        super().__init__()
        self.block = nn.Sequential(*_cbr(cin, cout, 3, rate))


class ASPPPooling(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_cbr(cin, cout))

    def forward(self, x):
        return F.interpolate(self.gap(x), x.shape[2:], mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    def __init__(self, cin, width):
        super().__init__()
        self.b0 = nn.Sequential(*_cbr(cin, width))
        self.b1, self.b2, self.b3 = ASPPConv(cin, width, 12), ASPPConv(cin, width, 24), ASPPConv(cin, width, 36)
        self.b4 = ASPPPooling(cin, width)
        self.project = nn.Sequential(*_cbr(5 * width, width), nn.Dropout(0.5))

    def forward(self, x):
        branches = [self.b0(x), self.b1.block(x), self.b2.block(x), self.b3.block(x), self.b4(x)]
        return self.project(torch.cat(branches, 1))


class DeepLabHead(nn.Module):
    def __init__(self, cin, nclass, width):
        super().__init__()
        self.aspp = ASPP(cin, width)
        self.block = nn.Sequential(*_cbr(width, width, 3), nn.Dropout(0.1), nn.Conv2d(width, nclass, 1))

    def forward(self, x):
        return self.block(self.aspp(x))


class FCNHead(nn.Module):
    def __init__(self, cin, nclass):
        super().__init__()
        self.block = nn.Sequential(*_cbr(cin, cin // 4, 3), nn.Dropout(0.1), nn.Conv2d(cin // 4, nclass, 1))

    def forward(self, x):
        return self.block(x)


class PyramidPooling(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.conv4 = (nn.Sequential(*_cbr(cin, cin // 4)) for _ in range(4))

    def forward(self, x):
        levels = [x]
        for bins, conv in zip((1, 2, 3, 6), (self.conv1, self.conv2, self.conv3, self.conv4)):
            pooled = conv(F.adaptive_avg_pool2d(x, bins))
            levels.append(F.interpolate(pooled, x.shape[2:], mode="bilinear", align_corners=True))
        return torch.cat(levels, 1)


class PSPHead(nn.Module):
    def __init__(self, cin, nclass, width):
        super().__init__()
        self.psp = PyramidPooling(cin)
        self.block = nn.Sequential(*_cbr(2 * cin, width, 3), nn.Dropout(0.1))
        self.classifier = nn.Conv2d(width, nclass, 1)

    def forward(self, x):
        return self.classifier(self.block(self.psp(x)))


class OfficialSegmentor(nn.Module):
    """forward(x) -> main logits at 1/8, as the official models' output [0]."""

    def __init__(self, name: str, nclass: int, width: int | None = None):
        super().__init__()
        if name == "deeplabv3_mbv2":
            self.pretrained = MobileNetV2Dilated()
            self.head = DeepLabHead(320, nclass, width or 128)
            return
        depth101 = name == "deeplabv3_r101"
        self.pretrained = ResNetV1s(BottleneckV1b, [3, 4, 23, 3]) if depth101 else ResNetV1s(BasicV1b, [2, 2, 2, 2])
        cin = 2048 if depth101 else 512
        self.head = PSPHead(cin, nclass, width or 128) if name == "pspnet_r18" \
            else DeepLabHead(cin, nclass, width or (256 if depth101 else 128))
        self.auxlayer = FCNHead(cin // 2, nclass)

    def forward(self, x):
        if isinstance(self.pretrained, MobileNetV2Dilated):
            return self.head(self.pretrained.net(x))
        return self.head(self.pretrained(x)[1])


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics, so that a misplaced tensor changes the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point:
                noise = torch.rand(tensor.shape, generator=generator)
                if name.endswith("running_var"):
                    tensor.copy_(0.5 + noise)
                elif name.endswith(("running_mean", "bias")):
                    tensor.copy_(noise - 0.5)
                elif name.endswith("weight") and tensor.ndim == 1:
                    tensor.copy_(0.5 + noise)
                else:
                    fan_in = max(1, tensor[0].numel())
                    tensor.copy_((noise - 0.5) * (6.0 / fan_in) ** 0.5)
    return model.eval()
