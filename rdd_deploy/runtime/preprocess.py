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


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image to `size` (H, W) with PIL bilinear filtering; a no-op at the same size."""
    if image.shape[:2] == tuple(size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def _source_index(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and weights of torch's bilinear resize with align_corners=False along one axis."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (src - low).astype(np.float32)


def resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize [..., h, w] logits to `size` (H, W) exactly as torch's interpolate(align_corners=False)."""
    logits = logits.astype(np.float32, copy=False)
    if logits.shape[-2:] == tuple(size):
        return logits
    top, bottom, wy = _source_index(logits.shape[-2], size[0])
    left, right, wx = _source_index(logits.shape[-1], size[1])
    rows = logits[..., top, :] + (logits[..., bottom, :] - logits[..., top, :]) * wy[:, None]
    return rows[..., left] + (rows[..., right] - rows[..., left]) * wx
