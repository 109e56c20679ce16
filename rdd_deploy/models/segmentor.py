"""A segmentation network: backbone stages, a main head on the last stage, an optional aux head on the third."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ALIGN_CORNERS = False  # the project's choice for every resize; the official variant's models use True throughout


def upsample_logits(logits: torch.Tensor, size: tuple[int, int] | torch.Size,
                    align_corners: bool = ALIGN_CORNERS) -> torch.Tensor:
    """Bilinearly resize [N,C,h,w] logits to `size` (H, W), by default with the project's align_corners choice."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)


class Segmentor(nn.Module):
    """Backbone + head (+ auxiliary FCN head); forward returns {"out", "aux"?, "features"?} at 1/8 scale.

    `align_corners` is how its logits are brought to full resolution (True for the official variant).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, aux_head: nn.Module | None,
                 align_corners: bool = ALIGN_CORNERS) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head
        self.align_corners = align_corners

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
        return upsample_logits(self.model(images)["out"], images.shape[-2:], self.model.align_corners)
