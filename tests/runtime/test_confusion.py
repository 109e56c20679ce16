"""The confusion matrix figure: a PNG that reloads, sized by the classes, each row normalised to its own pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.confusion import CELL, grid_origin, heat_colour, row_normalised, write_confusion_png
from rdd_deploy.runtime.metrics import confusion_dict

NAMES = ["road", "sidewalk", "car"]
# rows: labelled class; row 2 has 10x the pixels of row 0 but the same proportions, so their cells share colours
MATRIX = np.array([[8, 2, 0], [0, 0, 0], [80, 20, 0]])


def cell_pixel(image: Image.Image, row: int, column: int) -> tuple[int, int, int]:
    """A pixel near the cell's top-left corner, away from the number written in its middle."""
    left, top = grid_origin(NAMES)
    return image.getpixel((left + column * CELL + 3, top + row * CELL + 3))


def test_png_reloads_with_row_shares_as_colours(tmp_path: Path) -> None:
    path = write_confusion_png(MATRIX, NAMES, tmp_path / "confusion.png")
    image = Image.open(io.BytesIO(path.read_bytes()))
    image.load()
    left, top = grid_origin(NAMES)
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.width >= left + 3 * CELL and image.height >= top + 3 * CELL
    assert cell_pixel(image, 0, 0) == heat_colour(0.8) == cell_pixel(image, 2, 0)  # normalised by row, not total
    assert cell_pixel(image, 0, 1) == heat_colour(0.2) == cell_pixel(image, 2, 1)
    assert cell_pixel(image, 0, 2) == (255, 255, 255) == cell_pixel(image, 1, 1)  # no pixel: white
    assert sum(cell_pixel(image, 0, 0)) < sum(cell_pixel(image, 0, 1))  # the larger share is darker


def test_row_normalised_and_json() -> None:
    shares = row_normalised(MATRIX)
    np.testing.assert_allclose(shares, [[0.8, 0.2, 0], [0, 0, 0], [0.8, 0.2, 0]])
    assert confusion_dict(MATRIX, NAMES) == {"classes": NAMES, "rows": "labelled class",
                                             "columns": "predicted class", "counts": MATRIX.tolist()}


def test_a_matrix_that_does_not_match_the_names_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RDDError, match=r"shape \[3, 3\] does not match 2 class names"):
        write_confusion_png(MATRIX, NAMES[:2], tmp_path / "confusion.png")
    assert not list(tmp_path.iterdir())
