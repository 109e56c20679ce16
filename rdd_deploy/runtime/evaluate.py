"""Validation of an exported model on labelled images: mIoU, Boundary IoU and per-class IoU, torch-free.

Samples are (HxWx3 uint8 RGB image, HxW integer label) pairs. `dataset_samples` builds them from an
rdd-deploy data set by duck typing (it never imports torch, so labels may be tensors or arrays).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.images import load_image
from rdd_deploy.runtime.metrics import SegmentationScores
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
    """Predict every sample and score it: miou, pixel_acc, boundary_miou (fractions), per-class iou and
    boundary_iou, the confusion matrix (confusion_dict), and the image count."""
    info = segmenter.info
    scores = SegmentationScores(info.num_classes, info.ignore_index if ignore_index is None else ignore_index,
                                info.class_names)
    images = 0
    for image, label in samples:
        scores.update(segmenter.predict(image), label)
        images += 1
        if on_image is not None:
            on_image()
    return validation_result(segmenter, scores, images)


def validation_result(segmenter: Segmenter, scores: SegmentationScores, images: int) -> dict[str, Any]:
    """What `evaluate` returns, from scores that have seen `images` of the segmenter's predictions."""
    if images == 0:
        raise RDDError("no images to validate on")
    info = segmenter.info
    return {"model": segmenter.source, "precision": info.precision, "images": images, "torch_miou": info.torch_miou,
            **scores.summary()}
