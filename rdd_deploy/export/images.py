"""Real images for verification and calibration: scikit-image's sample photos and a data set's images.

Noise inputs hide errors that real photos show (saturated logits, argmax ties, pooling edge effects), so
every export is checked on photos. All images here are HxWx3 uint8 RGB, before any resizing.
"""

from __future__ import annotations

import numpy as np

from rdd_deploy.errors import RDDError

# Colour photos that ship inside scikit-image (no download): a person, objects, an animal, an outdoor scene.
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
VERIFY_DATASET_IMAGES = 4  # held-out data-set images added to the photos when --calib-data names a data set


def sample_photos() -> list[np.ndarray]:
    """scikit-image's bundled colour photos; an RDDError naming the fix when scikit-image is missing."""
    try:
        from skimage import data
    except ImportError:
        raise RDDError("verification needs real photos: pip install scikit-image, or pass --calib-data "
                       "to verify on data-set images") from None
    return [np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in SAMPLE_PHOTOS]


def dataset_images(spec: str, split: str, count: int) -> list[np.ndarray]:
    """`count` un-augmented images spread evenly over split `split` of the data set `spec`."""
    from rdd_deploy.data import build_dataset

    dataset = build_dataset(spec, split=split)
    if len(dataset) == 0:
        raise RDDError(f"data set '{spec}' has no {split} images")
    # Evenly spaced rather than the first N: consecutive files often come from one city or one sequence.
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int))
    return [dataset.raw(int(index))[0] for index in indices]


def verification_images(calib_data: str | None) -> list[np.ndarray]:
    """scikit-image's photos, plus held-out (val) images of the calibration data set when one is given.

    The data-set images check a quantised model where it will be used; the photos check every model on
    content it was not tuned for. Either source alone is enough; neither is an error.
    """
    try:
        images = sample_photos()
    except RDDError:
        if calib_data is None:
            raise
        images = []
    if calib_data is not None:
        images += dataset_images(calib_data, "val", VERIFY_DATASET_IMAGES)
    return images
