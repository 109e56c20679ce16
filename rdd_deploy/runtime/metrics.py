"""Segmentation metrics: per-class IoU, mIoU and pixel accuracy from a confusion matrix, plus Boundary IoU
(numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.boundary import BoundaryIoU


class SegmentationMetric:
    """Accumulates a [C, C] confusion matrix (rows: target class, columns: predicted class) over many images.

    The matrix is a plain int64 array so that distributed training can all-reduce it (sum) across ranks
    and assign it back through `confusion`, or combine metrics with `merge`.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @property
    def confusion(self) -> np.ndarray:
        """The accumulated [C, C] int64 confusion matrix."""
        return self._confusion

    @confusion.setter
    def confusion(self, matrix: np.ndarray) -> None:
        matrix = np.asarray(matrix)
        if matrix.shape != self._confusion.shape:
            raise ValueError(f"confusion must have shape {self._confusion.shape}, got {matrix.shape}")
        self._confusion = matrix.astype(np.int64, copy=True)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._confusion[:] = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one prediction/label pair of any matching shape; target pixels equal to ignore_index are skipped."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} does not match target shape {target.shape}")
        keep = target != self.ignore_index
        pred, target = pred[keep].astype(np.int64), target[keep].astype(np.int64)
        for name, values in (("target", target), ("prediction", pred)):
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                bad = values[(values < 0) | (values >= self.num_classes)][0]
                raise ValueError(f"{name} holds class {bad}, outside 0..{self.num_classes - 1} "
                                 f"(ignore_index is {self.ignore_index})")
        counts = np.bincount(target * self.num_classes + pred, minlength=self.num_classes ** 2)
        self._confusion += counts.reshape(self.num_classes, self.num_classes)

    def merge(self, other: SegmentationMetric) -> None:
        """Add another metric's confusion matrix to this one (same number of classes)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class metric into a {self.num_classes}-class one")
        self._confusion += other.confusion

    def compute(self) -> dict[str, Any]:
        """miou (nanmean over classes present in prediction or target), iou per class (NaN if absent), pixel_acc."""
        matrix = self._confusion.astype(np.float64)
        hits = np.diag(matrix)
        union = matrix.sum(axis=0) + matrix.sum(axis=1) - hits
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, hits / union, np.nan)
            pixel_acc = hits.sum() / matrix.sum() if matrix.sum() else float("nan")
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        return {"miou": miou, "iou": iou, "pixel_acc": float(pixel_acc), "confusion": self._confusion.copy()}


def by_name(names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    """Per-class values keyed by class name, None where a class is absent (NaN)."""
    return {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, values)}


def confusion_dict(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """The confusion matrix JSON-ready: class names, what rows and columns mean, and the pixel counts."""
    matrix = np.asarray(matrix)
    if matrix.shape != (len(class_names), len(class_names)):
        raise RDDError(f"confusion matrix of shape {list(matrix.shape)} does not match {len(class_names)} class names")
    return {"classes": list(class_names), "rows": "labelled class", "columns": "predicted class",
            "counts": matrix.astype(np.int64).tolist()}


class SegmentationScores:
    """mIoU and Boundary IoU of the same predictions, per class by name: what evaluate, validate and parity report.

    boundary=False leaves Boundary IoU out (training's validations, which run often and need only mIoU).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None,
                 dilation_ratio: float = 0.02, boundary: bool = True) -> None:
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.pixels = SegmentationMetric(num_classes, ignore_index)
        self.boundary = BoundaryIoU(num_classes, ignore_index, dilation_ratio) if boundary else None

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one HxW prediction and its label."""
        self.pixels.update(pred, target)
        if self.boundary is not None:
            self.boundary.update(pred, target)

    def summary(self) -> dict[str, Any]:
        """miou, pixel_acc, iou per class, boundary_miou and boundary_iou per class (fractions; None if absent), and
        the confusion matrix (confusion_dict)."""
        pixels = self.pixels.compute()
        result = {"miou": pixels["miou"], "pixel_acc": pixels["pixel_acc"],
                  "iou": by_name(self.class_names, pixels["iou"])}
        if self.boundary is not None:
            boundary = self.boundary.compute()
            result.update(boundary_miou=boundary["mean"], boundary_iou=by_name(self.class_names, boundary["per_class"]))
        return {**result, "confusion": confusion_dict(pixels["confusion"], self.class_names)}
