"""Masks as annotation tools save them: class-index PNGs (mode L or P) and RGB colour PNGs mapped by a palette.

`MaskCodec.decode` returns the train-id label and, instead of failing at the first stray value, the count of
every value or colour that is not a class, so that `check-data` can report them all and a reader can refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdd_deploy.data.base import IGNORE_INDEX, INVALID
from rdd_deploy.errors import RDDError

INDEX_MODES = ("L", "P")  # P: the pixel values are the indices, whatever colours the palette shows
COLOUR_MODES = ("RGB", "RGBA")  # RGBA: the alpha channel is dropped


def colour_keys(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> HxW int32 r<<16 | g<<8 | b, so that colours compare as single numbers."""
    pixels = pixels.astype(np.int32)
    return (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]


@dataclass(frozen=True)
class MaskCodec:
    """How the mask files of one data set encode its classes."""

    num_classes: int
    palette: tuple[tuple[int, int, int], ...]  # colour of each class, for RGB colour masks
    ignore_value: int = IGNORE_INDEX  # the index-mask value of unlabelled pixels
    reduce_zero_label: bool = False  # index masks store 0 for unlabelled and class k as k + 1 (MMSegmentation)

    def index_table(self) -> np.ndarray:
        """A 256-entry stored value -> train id table; INVALID for values that are no class."""
        table = np.full(256, INVALID, dtype=np.int64)
        shift = 1 if self.reduce_zero_label else 0
        table[shift:shift + self.num_classes] = np.arange(min(self.num_classes, 256 - shift))
        table[self.ignore_value] = IGNORE_INDEX
        if self.reduce_zero_label:
            table[0] = IGNORE_INDEX
        return table

    def decode(self, path: Path) -> tuple[np.ndarray, dict[str, int]]:
        """(HxW int64 train ids, {"value 7" or "colour (r, g, b)": pixel count}) of one mask file; pixels
        that are no class are IGNORE_INDEX in the label and counted in the dict."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                if image.format == "JPEG":
                    raise RDDError(f"mask {path} is a JPEG: lossy compression changes class values at object "
                                   "edges; save masks as PNG")
                mode = image.mode
                pixels = np.asarray(image.convert("RGB") if mode == "RGBA" else image)
        except (UnidentifiedImageError, OSError) as exc:
            raise RDDError(f"cannot read mask {path}: {str(exc).splitlines()[0]}") from None
        if mode in INDEX_MODES:
            return self._from_index(pixels)
        if mode in COLOUR_MODES:
            return self._from_colour(pixels, path)
        raise RDDError(f"mask {path} has mode {mode}; masks must be class-index PNGs (mode L or P) or RGB "
                       "colour PNGs")

    def _from_index(self, pixels: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        table = self.index_table()
        counts = np.bincount(pixels.ravel(), minlength=256)
        unknown = {f"value {v}": int(counts[v]) for v in np.flatnonzero(counts) if table[v] == INVALID}
        if unknown:
            table = np.where(table == INVALID, IGNORE_INDEX, table)
        return np.take(table, pixels), unknown

    def _from_colour(self, pixels: np.ndarray, path: Path) -> tuple[np.ndarray, dict[str, int]]:
        if not self.palette:
            raise RDDError(f"mask {path} is an RGB colour mask but the data set has no palette to map colours "
                           "to classes; add `palette:` to dataset.yaml or save class-index masks")
        keys = colour_keys(pixels)
        palette_keys = colour_keys(np.asarray(self.palette, dtype=np.uint8)[None])[0]
        order = np.argsort(palette_keys)
        sorted_keys = palette_keys[order]
        position = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        known = sorted_keys[position] == keys
        label = np.where(known, order[position], IGNORE_INDEX).astype(np.int64)
        unknown = {}
        if not known.all():
            values, counts = np.unique(keys[~known], return_counts=True)
            unknown = {f"colour ({v >> 16}, {(v >> 8) & 255}, {v & 255})": int(c) for v, c in zip(values, counts)}
        return label, unknown
