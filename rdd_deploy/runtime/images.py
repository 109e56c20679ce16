"""Reading input photos strictly: RGB only, big enough, one clear error line otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rdd_deploy.errors import RDDError

MIN_SIDE = 32  # an output-stride-8 network sees 4x4 features at this size; below it the logits are meaningless
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_MODE_NAMES = {"L": "grayscale", "LA": "grayscale + alpha", "RGBA": "RGBA (with alpha)", "P": "palette",
               "1": "1-bit", "I;16": "16-bit grayscale", "I": "32-bit grayscale", "F": "float grayscale",
               "CMYK": "CMYK"}


def check_image(path: str | os.PathLike) -> tuple[int, int]:
    """Open an image's header without decoding it; return (H, W) or raise RDDError naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise RDDError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise RDDError(f"cannot read image {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    if mode != "RGB":
        raise RDDError(f"{path} is a {_MODE_NAMES.get(mode, mode)} image (PIL mode '{mode}'); the model needs "
                       "3-channel RGB: convert it first, e.g. Image.open(path).convert('RGB')")
    check_size((height, width), str(path))
    return height, width


def check_size(size: tuple[int, int], name: str) -> None:
    """Refuse images with a side shorter than MIN_SIDE pixels."""
    if min(size) < MIN_SIDE:
        raise RDDError(f"{name} is {size[0]}x{size[1]} pixels; images need at least {MIN_SIDE} px on each side")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an RGB image file into an HxWx3 uint8 array (no conversion: other modes are an error)."""
    from PIL import Image

    check_image(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image, dtype=np.uint8)
    except OSError as exc:  # a valid header over truncated pixel data
        raise RDDError(f"cannot decode image {path}: {str(exc).splitlines()[0]}") from None


def as_image(image: np.ndarray | str | os.PathLike, name: str = "image") -> np.ndarray:
    """Accept a path or an HxWx3 uint8 array; return the array after the same checks as for files."""
    if not isinstance(image, np.ndarray):
        return load_image(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise RDDError(f"{name} must be an HxWx3 uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    check_size(image.shape[:2], name)
    return image


def image_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (not recursive) into a sorted list of image files; a missing input is an error."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise RDDError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise RDDError(f"image not found: {item}")
    return files
