"""Segmentation heads: DeepLabV3's ASPP, PSPNet's pyramid pooling and the auxiliary FCN head.

Written for export: sizes come from tensor shapes, global pooling is a mean that
broadcasts back (valid for any H and W), and PSPNet's adaptive pooling is two
matrix products that are exact for every input size and export to plain ONNX ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    """A bias-free convolution followed by BatchNorm and ReLU, padded to keep the size."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, three dilated 3x3 branches and image pooling."""

    def __init__(self, in_channels: int, out_channels: int = 256, rates: tuple[int, ...] = (12, 24, 36),
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, out_channels)]
            + [conv_bn_relu(in_channels, out_channels, 3, rate) for rate in rates]
        )
        self.image_pool = conv_bn_relu(in_channels, out_channels)
        self.project = nn.Sequential(conv_bn_relu(out_channels * (len(rates) + 2), out_channels), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the branches and project them back to `out_channels`."""
        outputs = [branch(x) for branch in self.branches]
        # Bilinear upsampling of a 1x1 map is a broadcast; expand_as exports for dynamic H and W.
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True))
        outputs.append(pooled.expand_as(outputs[0]))
        return self.project(torch.cat(outputs, dim=1))


class DeepLabV3Head(nn.Module):
    """ASPP followed by a 3x3 convolution and the classifier.

    official=True: the official layout, ASPP projection with Dropout(0.5) and Dropout(0.1) before the classifier.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, official: bool = False) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, channels, dropout=0.5 if official else 0.1)
        self.block = conv_bn_relu(channels, channels, 3)
        if official:
            self.block.append(nn.Dropout(0.1))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits at the feature resolution."""
        return self.classifier(self.block(self.aspp(x)))


def adaptive_pool_matrix(length: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """[bins, length] averaging matrix with adaptive_avg_pool's windows [floor(i*L/b), ceil((i+1)*L/b))."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * length, bins, rounding_mode="floor")
    end = torch.div((index + 1) * length + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(length, device=like.device)
    inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def exact_adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """adaptive_avg_pool2d(x, bins) as two matrix products, exact for any size and exportable."""
    rows = adaptive_pool_matrix(x.shape[-2], bins, x)
    cols = adaptive_pool_matrix(x.shape[-1], bins, x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: pool to each bin size, reduce, upsample and concatenate."""

    def __init__(self, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6), align_corners: bool = False) -> None:
        super().__init__()
        self.bins, self.align_corners = bins, align_corners
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList([conv_bn_relu(in_channels, reduced) for _ in bins])
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the input concatenated with every upsampled pyramid level."""
        size = x.shape[-2:]
        levels = [x]
        for bins, stage in zip(self.bins, self.stages):
            pooled = stage(exact_adaptive_avg_pool2d(x, bins))
            levels.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=self.align_corners))
        return torch.cat(levels, dim=1)


class PSPHead(nn.Module):
    """Pyramid pooling, a 3x3 bottleneck and the classifier; official=True upsamples the levels with align_corners."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, official: bool = False) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels, align_corners=official)
        self.block = nn.Sequential(conv_bn_relu(self.ppm.out_channels, channels, 3), nn.Dropout(0.1))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits at the feature resolution."""
        return self.classifier(self.block(self.ppm(x)))


class FCNHead(nn.Module):
    """The auxiliary head on the third stage: 3x3 conv, dropout, classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int | None = None) -> None:
        super().__init__()
        channels = channels or max(in_channels // 4, 32)
        self.block = nn.Sequential(conv_bn_relu(in_channels, channels, 3), nn.Dropout(0.1))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return auxiliary class logits at the feature resolution."""
        return self.classifier(self.block(x))
