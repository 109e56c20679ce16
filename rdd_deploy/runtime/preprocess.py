"""Image preprocessing written once in numpy; training, export verification and inference all import it."""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN,
              std: tuple[float, ...] = IMAGENET_STD) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xHxW float32, scaled to [0, 1] then standardised with mean/std."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    scaled = image.astype(np.float32) * np.float32(1.0 / 255.0)
    standard = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(standard.transpose(2, 0, 1))


def normalize_batch(images: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN,
                    std: tuple[float, ...] = IMAGENET_STD) -> np.ndarray:
    """NxHxWx3 uint8 -> Nx3xHxW float32 with the same maths as `normalize`."""
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected an NxHxWx3 RGB batch, got shape {images.shape}")
    scaled = images.astype(np.float32) * np.float32(1.0 / 255.0)
    standard = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(standard.transpose(0, 3, 1, 2))
