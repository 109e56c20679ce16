"""A segmentation network: backbone stages, a main head on the last stage, an optional aux head on the third."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ALIGN_CORNERS = False  # one choice for every resize in training, export and runtime


def upsample_logits(logits: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinearly resize [N,C,h,w] logits to `size` (H, W) with the project's align_corners choice."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)


class Segmentor(nn.Module):
    """Backbone + head (+ auxiliary FCN head); forward returns {"out", "aux"?, "features"?} at 1/8 scale."""

    def __init__(self, backbone: nn.Module, head: nn.Module, aux_head: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head

    def forward(self, images: torch.Tensor, return_features: bool = False) -> dict[str, torch.Tensor]:
        """Logits at output stride 8; `features` (the four stage outputs) for feature distillers."""
        stages = self.backbone(images)
        outputs = {"out": self.head(stages[-1])}
        if self.aux_head is not None:
            outputs["aux"] = self.aux_head(stages[2])
        if return_features:
            outputs["features"] = stages
        return outputs


class FullResolution(nn.Module):
    """Wrap a Segmentor so that forward(images) returns main logits at the input's H and W (for export)."""

    def __init__(self, model: Segmentor) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Main-head logits upsampled to the input size."""
        return upsample_logits(self.model(images)["out"], images.shape[-2:])
