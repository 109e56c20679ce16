"""Boundary IoU against cases computed by hand and against an independent re-statement of the authors' code."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rdd_deploy.runtime.boundary import BoundaryIoU, dilation_pixels, erode
from rdd_deploy.runtime.metrics import SegmentationScores


def square(top: int, left: int, side: int = 10, size: int = 50, cls: int = 1) -> np.ndarray:
    """A size x size label map of class 0 with a side x side square of `cls`."""
    label = np.zeros((size, size), dtype=np.int64)
    label[top:top + side, left:left + side] = cls
    return label


def reference_boundary_iou(preds: list[np.ndarray], targets: list[np.ndarray], num_classes: int,
                           ignore: int = 255, ratio: float = 0.02) -> list[float]:
    """The boundary-iou-api's mask_to_boundary (pad by 1, d iterations of a 3x3 erosion), here with scipy."""
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for pred, target in zip(preds, targets):
        h, w = target.shape
        d = max(1, int(round(ratio * np.sqrt(h ** 2 + w ** 2))))
        valid = target != ignore

        def band(mask: np.ndarray) -> np.ndarray:
            padded = np.pad(mask, 1)
            eroded = ndimage.binary_erosion(padded, np.ones((3, 3)), iterations=d, border_value=1)[1:-1, 1:-1]
            return mask & ~eroded

        for c in range(num_classes):
            g, p = band(target == c), band(pred == c)
            inter[c] += (g & p & valid).sum()
            union[c] += ((g | p) & valid).sum()
    return [i / u if u else float("nan") for i, u in zip(inter, union)]


def test_boundary_width_is_two_percent_of_the_diagonal_at_least_one() -> None:
    assert dilation_pixels(50, 50) == 1  # 0.02 * 70.7 = 1.41
    assert dilation_pixels(1024, 2048) == 46  # Cityscapes: 0.02 * 2289.7 = 45.8
    assert dilation_pixels(8, 8) == 1  # 0.23 rounds to 0, raised to 1


def test_erosion_treats_the_image_border_as_background() -> None:
    full = np.ones((5, 6), dtype=bool)
    expected = np.zeros((5, 6), dtype=bool)
    expected[1:4, 1:5] = True
    np.testing.assert_array_equal(erode(full, 1), expected)


def test_identical_square_scores_one() -> None:
    metric = BoundaryIoU(2)
    metric.update(square(10, 10), square(10, 10))
    result = metric.compute()
    assert result["mean"] == 1.0 and list(result["per_class"]) == [1.0, 1.0]


def test_square_shifted_by_one_pixel_by_hand() -> None:
    # d = 1 on a 50x50 image. The 10x10 square's boundary is its 36-pixel outer ring; shifted one column right,
    # the two rings share only their top and bottom rows' 9 common columns: 18 / (36 + 36 - 18) = 1/3.
    # Background: the image's 196-pixel border ring (in both) plus the 44-pixel ring just outside the square;
    # the two outer rings share their top and bottom rows' 11 common columns: (196 + 22) / (2 * 240 - 218).
    metric = BoundaryIoU(2)
    metric.update(square(10, 11), square(10, 10))
    per_class = metric.compute()["per_class"]
    assert per_class[1] == pytest.approx(1 / 3)
    assert per_class[0] == pytest.approx(218 / 262)
    assert metric.compute()["mean"] == pytest.approx((1 / 3 + 218 / 262) / 2)


def test_absent_class_is_left_out_and_a_missed_class_scores_zero() -> None:
    metric = BoundaryIoU(4)
    metric.update(np.zeros((50, 50), dtype=np.int64), square(10, 10))  # class 1 missed, classes 2 and 3 absent
    per_class = metric.compute()["per_class"]
    assert per_class[1] == 0.0 and np.isnan(per_class[2]) and np.isnan(per_class[3])
    assert metric.compute()["mean"] == pytest.approx(per_class[0] / 2)


def test_ignored_pixels_count_nowhere() -> None:
    target = square(10, 10)
    target[:, 30:] = 255
    pred = square(10, 10)
    pred[:, 30:] = 1  # wrong, but only where the label is ignored
    metric = BoundaryIoU(2)
    metric.update(pred, target)
    assert metric.compute()["per_class"][1] == 1.0


def test_interior_and_boundary_split_each_mask() -> None:
    target, pred = square(10, 10), square(10, 11)
    interior = BoundaryIoU(2, region="interior")
    interior.update(pred, target)
    # interiors: 8x8 squares at columns 11-18 and 12-19: 8 * 7 shared of 8 * 9 in their union
    assert interior.compute()["per_class"][1] == pytest.approx(56 / 72)


def test_matches_an_independent_restatement_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    preds, targets = [], []
    for size in [(37, 53), (64, 64), (20, 90)]:
        # blobs: smoothed noise thresholded into 5 classes, with some ignored pixels
        field = ndimage.gaussian_filter(rng.normal(size=(5, *size)), 3).argmax(axis=0)
        target = field.copy()
        target[rng.random(size) < 0.05] = 255
        pred = np.where(rng.random(size) < 0.1, rng.integers(0, 5, size), np.roll(field, 2, axis=1))
        preds.append(pred)
        targets.append(target)
    metric = BoundaryIoU(5)
    for pred, target in zip(preds, targets):
        metric.update(pred, target)
    np.testing.assert_allclose(metric.compute()["per_class"], reference_boundary_iou(preds, targets, 5), rtol=1e-12)


def test_scores_report_both_metrics_by_class_name() -> None:
    scores = SegmentationScores(3, class_names=["road", "car", "sky"])
    scores.update(square(10, 11), square(10, 10))
    summary = scores.summary()
    assert set(summary["boundary_iou"]) == {"road", "car", "sky"} and summary["boundary_iou"]["sky"] is None
    assert summary["boundary_iou"]["car"] == pytest.approx(1 / 3)
    assert summary["iou"]["car"] == pytest.approx(90 / 110)  # 9 columns shared of 11
