"""Joint image+label training augmentation on uint8 pixels: random scale, pad, random crop, random flip.

Every random draw comes from torch's global generator, so a resumed run that restores torch's RNG state
replays the same crops, and DataLoader workers (which seed torch per worker) get different ones.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from rdd_deploy.data.base import IGNORE_INDEX


def random_scale(image: np.ndarray, label: np.ndarray,
                 scale_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Resize by a factor drawn uniformly from `scale_range`: image bilinear, label nearest."""
    low, high = scale_range
    scale = low + (high - low) * torch.rand(()).item()
    height, width = label.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return image, label
    image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    # train ids fit in uint8 (0..C-1 and 255), so the label can travel through PIL as an 8-bit image
    label = np.asarray(Image.fromarray(label.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
    return image, label.astype(np.int64)


def pad_to(image: np.ndarray, label: np.ndarray, size: tuple[int, int],
           mean: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right up to `size`: the image with the mean colour (zero after normalising), the label with 255."""
    pad_h, pad_w = max(size[0] - label.shape[0], 0), max(size[1] - label.shape[1], 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    fill = np.round(np.asarray(mean) * 255).astype(np.uint8)
    padded = np.empty((label.shape[0] + pad_h, label.shape[1] + pad_w, 3), dtype=np.uint8)
    padded[:] = fill
    padded[:label.shape[0], :label.shape[1]] = image
    padded_label = np.full(padded.shape[:2], IGNORE_INDEX, dtype=np.int64)
    padded_label[:label.shape[0], :label.shape[1]] = label
    return padded, padded_label


def random_crop(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cut a `size` window at a uniformly random position (inputs are at least `size`)."""
    top = int(torch.randint(0, label.shape[0] - size[0] + 1, ()).item())
    left = int(torch.randint(0, label.shape[1] - size[1] + 1, ()).item())
    return image[top:top + size[0], left:left + size[1]], label[top:top + size[0], left:left + size[1]]


def random_flip(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and label together with probability 1/2."""
    if torch.rand(()).item() < 0.5:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def train_transform(image: np.ndarray, label: np.ndarray, crop_size: tuple[int, int],
                    scale_range: tuple[float, float] | None, flip: bool,
                    mean: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Scale (if `scale_range`), pad, crop to `crop_size` and flip (if `flip`); returns contiguous arrays."""
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    if scale_range is not None:
        image, label = random_scale(image, label, scale_range)
    image, label = pad_to(image, label, crop_size, mean)
    image, label = random_crop(image, label, crop_size)
    if flip:
        image, label = random_flip(image, label)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
