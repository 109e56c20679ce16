"""SegmentationMetric against a hand-computed example and an explicit per-class set computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rdd_deploy.runtime.metrics import SegmentationMetric


def reference_iou(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int) -> list[float]:
    """IoU by set logic, one class at a time: |P & T| / |P | T| over non-ignored pixels."""
    valid = target != ignore
    ious = []
    for c in range(num_classes):
        predicted, actual = (pred == c) & valid, (target == c) & valid
        union = np.sum(predicted | actual)
        ious.append(float(np.sum(predicted & actual) / union) if union else math.nan)
    return ious


def test_hand_computed_3x3() -> None:
    target = np.array([[0, 0, 1], [1, 1, 2], [2, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 2, 2], [2, 0, 0]])
    metric = SegmentationMetric(3)
    metric.update(pred, target)
    result = metric.compute()
    # class 0: hit 1, pred {00, 21}, target {00, 01} -> 1/3; class 1: hits {02, 10}, union {01, 02, 10, 11} -> 2/4;
    # class 2: hits {12, 20}, union {11, 12, 20, 21} -> 2/4; pixel accuracy 5 of 8 labelled pixels
    assert result["iou"] == pytest.approx([1 / 3, 0.5, 0.5])
    assert result["miou"] == pytest.approx((1 / 3 + 0.5 + 0.5) / 3)
    assert result["pixel_acc"] == pytest.approx(5 / 8)
    assert result["confusion"].tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 2]]


def test_random_against_set_logic() -> None:
    rng = np.random.default_rng(1)
    metric = SegmentationMetric(6, ignore_index=255)
    preds, targets = [], []
    for _ in range(3):
        target = rng.integers(0, 5, (2, 17, 23))  # class 5 never appears in the target ...
        target[rng.random(target.shape) < 0.1] = 255
        pred = rng.integers(0, 5, target.shape)  # ... nor in the prediction: its IoU is NaN
        metric.update(pred, target)
        preds.append(pred.ravel())
        targets.append(target.ravel())
    expected = reference_iou(np.concatenate(preds), np.concatenate(targets), 6, 255)
    result = metric.compute()
    np.testing.assert_allclose(result["iou"], expected, rtol=1e-12)
    assert math.isnan(result["iou"][5])
    assert result["miou"] == pytest.approx(np.mean(expected[:5]))


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        SegmentationMetric(3).update(np.zeros((4, 5), int), np.zeros((5, 4), int))


def test_out_of_range_label_is_an_error() -> None:
    with pytest.raises(ValueError, match="target holds class 7"):
        SegmentationMetric(3).update(np.zeros(4, int), np.array([0, 1, 7, 255]))


def test_merge_and_settable_confusion_equal_one_pass() -> None:
    rng = np.random.default_rng(2)
    pred, target = rng.integers(0, 4, (2, 50)), rng.integers(0, 4, (2, 50))
    whole, first, second = SegmentationMetric(4), SegmentationMetric(4), SegmentationMetric(4)
    whole.update(pred, target)
    first.update(pred[0], target[0])
    second.update(pred[1], target[1])
    first.merge(second)
    assert np.array_equal(first.confusion, whole.confusion)
    reduced = SegmentationMetric(4)
    reduced.confusion = first.confusion * 2  # what an all-reduce over two identical ranks hands back
    assert reduced.compute()["miou"] == pytest.approx(whole.compute()["miou"])
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        reduced.confusion = np.zeros((3, 3))


def test_empty_metric_is_nan() -> None:
    result = SegmentationMetric(2).compute()
    assert math.isnan(result["miou"]) and math.isnan(result["pixel_acc"])
