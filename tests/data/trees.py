"""Writers of tiny photos and label PNGs for the reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 32, 48


def write_image(path: Path, seed: int = 0, mode: str = "RGB") -> np.ndarray:
    """A random photo in PIL `mode` (PNG or JPEG by suffix); returns the RGB pixels before any JPEG loss."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return pixels


def write_label(path: Path, values: list[int], palette: bool = False) -> np.ndarray:
    """An 8-bit label PNG whose rows cycle through `values`; a palette ("P") PNG when `palette`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.resize(np.asarray(values, dtype=np.uint8), H)[:, None].repeat(W, axis=1)
    image = Image.new("P" if palette else "L", (W, H))
    image.putdata(label.ravel().tolist())
    if palette:  # colours unrelated to the indices, so reading RGB instead of indices would fail the test
        image.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
    image.save(path)
    return label
