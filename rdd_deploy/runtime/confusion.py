"""The confusion matrix as JSON and as a row-normalised heat map PNG, drawn with Pillow (no matplotlib in the runtime).

Rows are the labelled (true) class, columns the predicted one; each row is divided by its pixel count, so a cell
reads "the share of this class's pixels predicted as that class" and the diagonal is each class's recall.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rdd_deploy.atomic import atomic_write_bytes
from rdd_deploy.errors import RDDError

CELL = 36  # pixels per matrix cell
PAD = 6
WHITE, DARK = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])  # share 0 and share 1


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a class with no labelled pixel keeps a row of zeros)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def heat_colour(share: float) -> tuple[int, int, int]:
    """The cell colour of a row share in [0, 1]: white to dark blue, linearly."""
    rgb = WHITE + float(np.clip(share, 0.0, 1.0)) * (DARK - WHITE)
    return tuple(int(round(v)) for v in rgb)


def grid_origin(class_names: Sequence[str]) -> tuple[int, int]:
    """(x, y) of the top-left corner of cell (0, 0): room for the row names on the left, column names on top."""
    font = ImageFont.load_default()
    widest = max(int(np.ceil(font.getlength(str(name)))) for name in class_names)
    return widest + 2 * PAD, widest + 2 * PAD + 14


def confusion_image(matrix: np.ndarray, class_names: Sequence[str]) -> Image.Image:
    """The row-normalised heat map with class names on both axes and the share (%) in each cell."""
    matrix = _checked(matrix, class_names)
    shares = row_normalised(matrix)
    font = ImageFont.load_default()
    left, top = grid_origin(class_names)
    count = len(class_names)
    image = Image.new("RGB", (left + count * CELL + PAD, top + count * CELL + 16 + PAD), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, PAD), "predicted class", fill="black", font=font)
    for row in range(count):
        y = top + row * CELL
        name = str(class_names[row])
        draw.text((left - PAD - font.getlength(name), y + CELL // 2 - 5), name, fill="black", font=font)
        for column in range(count):
            x = left + column * CELL
            share = shares[row, column]
            draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill=heat_colour(share))
            if matrix[row].sum():
                text = f"{100 * share:.0f}"
                ink = "white" if share > 0.5 else "black"
                draw.text((x + (CELL - font.getlength(text)) / 2, y + CELL // 2 - 5), text, fill=ink, font=font)
    for column, name in enumerate(class_names):  # column names written upwards, one per column
        label = Image.new("RGB", (int(np.ceil(font.getlength(str(name)))) + 2, 12), "white")
        ImageDraw.Draw(label).text((0, 0), str(name), fill="black", font=font)
        label = label.rotate(90, expand=True)
        image.paste(label, (left + column * CELL + (CELL - label.width) // 2, top - PAD - label.height))
    draw.text((PAD, top + count * CELL + 4), "rows: labelled class, % of its pixels", fill="black", font=font)
    return image


def confusion_png(matrix: np.ndarray, class_names: Sequence[str]) -> bytes:
    """The heat map as PNG bytes (for files and data URIs)."""
    buffer = io.BytesIO()
    confusion_image(matrix, class_names).save(buffer, format="PNG")
    return buffer.getvalue()


def write_confusion_png(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write the heat map to `path` atomically."""
    return atomic_write_bytes(path, confusion_png(matrix, class_names))


def _checked(matrix: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    matrix = np.asarray(matrix)
    count = len(class_names)
    if matrix.shape != (count, count):
        raise RDDError(f"confusion matrix of shape {list(matrix.shape)} does not match {count} class names")
    return matrix
