"""Validation of an exported model on labelled images: mIoU and per-class IoU, torch-free.

Samples are (HxWx3 uint8 RGB image, HxW integer label) pairs. `dataset_samples` builds them from an
rdd-deploy data set by duck typing (it never imports torch, so labels may be tensors or arrays).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.images import load_image
from rdd_deploy.runtime.metrics import SegmentationMetric
from rdd_deploy.runtime.segmenter import Segmenter


def dataset_samples(dataset: Any, max_images: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Raw (uint8 image, label) pairs: `dataset.raw(i)` when it exists, else the file at `dataset.image_path(i)`
    with the label of `dataset[i]`."""
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    for index in range(count):
        if hasattr(dataset, "raw"):
            image, label = dataset.raw(index)
        else:
            path = dataset.image_path(index)
            if path is None:
                raise RDDError(f"data set item {index} has neither raw pixels (raw(i)) nor a source file "
                               "(image_path(i)); validate needs the original uint8 images")
            image, label = load_image(path), dataset[index][1]
        image, label = np.asarray(image), np.asarray(label)
        if image.dtype != np.uint8 or image.shape[:2] != label.shape:
            raise RDDError(f"data set item {index}: image {image.shape} {image.dtype} does not match label "
                           f"{label.shape}; expected an HxWx3 uint8 image and an HxW label")
        yield image, label


def evaluate(segmenter: Segmenter, samples: Iterable[tuple[np.ndarray, np.ndarray]], ignore_index: int | None = None,
             on_image: Callable[[], None] | None = None) -> dict[str, Any]:
    """Predict every sample and score it; returns miou, pixel_acc (fractions), per-class iou and image count."""
    info = segmenter.info
    metric = SegmentationMetric(info.num_classes, info.ignore_index if ignore_index is None else ignore_index)
    images = 0
    for image, label in samples:
        metric.update(segmenter.predict(image), label)
        images += 1
        if on_image is not None:
            on_image()
    if images == 0:
        raise RDDError("no images to validate on")
    result = metric.compute()
    return {"model": segmenter.source, "precision": info.precision, "images": images, "miou": result["miou"],
            "pixel_acc": result["pixel_acc"], "torch_miou": info.torch_miou,
            "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(info.class_names, result["iou"])}}
