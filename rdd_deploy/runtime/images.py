"""Reading input photos: 8-bit RGB, or converted to it from 8-bit grayscale/alpha/palette; one clear error otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rdd_deploy.errors import RDDError

MIN_SIDE = 32  # an output-stride-8 network sees 4x4 features at this size; below it the logits are meaningless
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# PIL modes that mean an ordinary photo and convert to RGB without guessing (alpha is dropped, like peers do)
CONVERTIBLE = {"L": "grayscale", "LA": "grayscale + alpha", "RGBA": "RGBA", "P": "palette", "1": "1-bit"}
# modes whose values have no agreed 8-bit RGB meaning (depth maps, measurements, print separations): refused
_MODE_NAMES = {"I;16": "16-bit grayscale", "I;16B": "16-bit grayscale", "I": "32-bit grayscale",
               "F": "float grayscale", "CMYK": "CMYK"}


class ImageHeader(NamedTuple):
    """What check_image reads from a file's header: its size and its PIL mode."""

    height: int
    width: int
    mode: str


def check_image(path: str | os.PathLike) -> ImageHeader:
    """Open an image's header without decoding it; refuse what cannot become 8-bit RGB, naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise RDDError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            mode, (width, height), frames = image.mode, image.size, getattr(image, "n_frames", 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise RDDError(f"cannot read image {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    if frames > 1:
        raise RDDError(f"{path} holds {frames} frames (multi-page or animated); save the one to segment as its "
                       "own file")
    if mode != "RGB" and mode not in CONVERTIBLE:
        raise RDDError(f"{path} is a {_MODE_NAMES.get(mode, mode)} image (PIL mode '{mode}'); the model needs "
                       "8-bit RGB and this cannot be converted without guessing a value range: convert it first")
    check_size((height, width), str(path))
    return ImageHeader(height, width, mode)


def conversion_note(headers: Sequence[tuple[Path, ImageHeader]]) -> str | None:
    """One line naming the images that load_image converts to RGB ("2 of 5 images ..."), or None if none are."""
    by_mode: dict[str, list[Path]] = {}
    for path, header in headers:
        if header.mode != "RGB":
            by_mode.setdefault(header.mode, []).append(path)
    if not by_mode:
        return None
    kinds = "; ".join(f"{len(paths)} {CONVERTIBLE[mode]}{', alpha dropped' if mode in ('RGBA', 'LA') else ''} "
                      f"({paths[0]}{', ...' if len(paths) > 1 else ''})" for mode, paths in by_mode.items())
    return f"converted {sum(map(len, by_mode.values()))} of {len(headers)} images to RGB: {kinds}"


def check_size(size: tuple[int, int], name: str) -> None:
    """Refuse images with a side shorter than MIN_SIDE pixels."""
    if min(size) < MIN_SIDE:
        raise RDDError(f"{name} is {size[0]}x{size[1]} pixels; images need at least {MIN_SIDE} px on each side")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file into an HxWx3 uint8 RGB array, converting the CONVERTIBLE modes (alpha dropped)."""
    from PIL import Image

    check_image(path)
    try:
        with Image.open(path) as image:
            if image.mode == "P":  # via RGBA: PIL warns when a palette with transparency goes straight to RGB
                image = image.convert("RGBA")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
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
