"""Writing predictions: palette PNG masks (mode "P", pixel value = class index) and colour overlays."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rdd_deploy.atomic import atomic_path
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.images import check_image, conversion_note, image_files, load_image
from rdd_deploy.runtime.model_info import ModelInfo
from rdd_deploy.runtime.segmenter import Segmenter


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map (bit-interleaved class index), distinct colours for up to 256 classes."""
    colours = []
    for index in range(num_classes):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((r, g, b))
    return colours


def palette_of(info: ModelInfo) -> list[tuple[int, int, int]]:
    """The model's palette from its metadata, else the default one."""
    return [tuple(c) for c in info.palette] if info.palette else default_palette(info.num_classes)


def mask_image(mask: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> Image.Image:
    """A mode "P" PIL image whose pixel values are the class indices and whose palette colours them."""
    if mask.max(initial=0) > 255:
        raise RDDError(f"a palette PNG holds at most 256 classes; the mask has class {int(mask.max())}")
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    image.putpalette([v for colour in palette for v in colour])
    return image


def overlay_image(image: np.ndarray, mask: np.ndarray, palette: Sequence[tuple[int, int, int]],
                  alpha: float = 0.5) -> Image.Image:
    """The photo blended with the class colours (alpha = weight of the colours)."""
    colours = np.asarray(palette, dtype=np.float32)[mask]
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save a PIL image as PNG atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def write_predictions(segmenter: Segmenter, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                      overlay: bool = False, warn: Callable[[str], None] = warnings.warn) -> list[Path]:
    """Predict every image (files or folders) into out_dir/<stem>.png (+ <stem>_overlay.png); returns the paths.

    Every input is checked before anything is written, so a bad image leaves no partial output behind; images
    converted to RGB (grayscale, alpha, palette) are named in one `warn` call.
    """
    files = image_files(inputs)
    headers = [(path, check_image(path)) for path in files]
    note = conversion_note(headers)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise RDDError(f"{path} and {stems[path.stem]} would both write {path.stem}.png; predict them separately")
        stems[path.stem] = path
    if note is not None:
        warn(note)
    palette, out, written = palette_of(segmenter.info), Path(out_dir), []
    for path in files:
        image = load_image(path)
        mask = segmenter.predict(image)
        written.append(save_png(mask_image(mask, palette), out / f"{path.stem}.png"))
        if overlay:
            written.append(save_png(overlay_image(image, mask, palette), out / f"{path.stem}_overlay.png"))
    return written
