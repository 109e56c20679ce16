"""Boundary IoU (Cheng et al., CVPR 2021) for semantic segmentation, numpy only.

A class's boundary region in a mask is the mask minus its erosion by d pixels with a square window (what the
authors' boundary-iou-api does with d iterations of a 3x3 `cv2.erode`), the mask first padded by one pixel of
background so that the image border counts as contour; d = round(dilation_ratio x image diagonal), at least 1.
Per class, the intersection and union of the ground-truth and predicted boundary regions are summed over the
data set; Boundary IoU is their ratio, averaged over the classes present (union > 0) as mIoU is. Pixels labelled
ignore_index are left out of both counts, as they are from mIoU. `region="interior"` scores the eroded masks
instead (the rest of each mask), so that boundary and interior IoU split a class's IoU by where the pixels lie.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

Region = Literal["boundary", "interior"]


def dilation_pixels(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """The boundary width d in pixels: dilation_ratio of the image diagonal, rounded, at least 1."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary erosion by a (2 * pixels + 1)-pixel square, everything outside the image counting as background."""
    height, width = mask.shape
    side = 2 * pixels + 1
    padded = np.zeros((height + 2 * pixels + 1, width + 2 * pixels + 1), dtype=np.int32)
    padded[pixels + 1:pixels + 1 + height, pixels + 1:pixels + 1 + width] = mask
    integral = padded.cumsum(axis=0, dtype=np.int32).cumsum(axis=1, dtype=np.int32)  # a window sum in 4 reads
    window = integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side] + integral[:-side, :-side]
    return window == side * side


def region_mask(mask: np.ndarray, pixels: int, region: Region = "boundary") -> np.ndarray:
    """The pixels of `mask` within `pixels` of its contour (boundary), or the others (interior)."""
    eroded = erode(mask, pixels)
    return mask & ~eroded if region == "boundary" else eroded


class BoundaryIoU:
    """Accumulates per-class boundary (or interior) intersections and unions over many HxW label maps."""

    def __init__(self, num_classes: int, ignore_index: int = 255, dilation_ratio: float = 0.02,
                 region: Region = "boundary") -> None:
        if region not in ("boundary", "interior"):
            raise ValueError(f"region must be 'boundary' or 'interior', got {region!r}")
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.dilation_ratio, self.region = dilation_ratio, region
        self._counts = np.zeros((2, self.num_classes), dtype=np.int64)  # intersection, union

    @property
    def counts(self) -> np.ndarray:
        """[2, C] int64: per-class intersection and union, summable across processes."""
        return self._counts

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        value = np.asarray(value)
        if value.shape != self._counts.shape:
            raise ValueError(f"counts must have shape {self._counts.shape}, got {value.shape}")
        self._counts = value.astype(np.int64, copy=True)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one HxW prediction and its HxW label; contours are those of whole masks, counts skip ignored pixels."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape or pred.ndim != 2:
            raise ValueError(f"boundary IoU takes one HxW prediction and label, got {pred.shape} and {target.shape}")
        valid = target != self.ignore_index
        pixels = dilation_pixels(*target.shape, self.dilation_ratio)
        for cls in np.union1d(np.unique(pred[valid]), np.unique(target[valid])):
            if not 0 <= cls < self.num_classes:
                raise ValueError(f"class {cls} is outside 0..{self.num_classes - 1}")
            truth = region_mask(target == cls, pixels, self.region)
            guess = region_mask(pred == cls, pixels, self.region)
            self._counts[0, cls] += np.count_nonzero(truth & guess & valid)
            self._counts[1, cls] += np.count_nonzero((truth | guess) & valid)

    def compute(self) -> dict[str, Any]:
        """mean (over classes with a non-empty union) and per-class values (NaN where the union is empty)."""
        intersection, union = self._counts.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(union > 0, intersection / union, np.nan)
        mean = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
        return {"mean": mean, "per_class": per_class}
