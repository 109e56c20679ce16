"""A few val images side by side: the photo, its labels, the prediction, and the pixels the model gets wrong."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from rdd_deploy.runtime.masks import mask_image
from rdd_deploy.runtime.segmenter import Segmenter

PANEL_HEIGHT = 160
WRONG = (230, 30, 30)
IGNORED = (128, 128, 128)


def error_image(image: np.ndarray, label: np.ndarray, prediction: np.ndarray, ignore_index: int) -> Image.Image:
    """The photo in faded grey, wrong pixels red, unlabelled (ignored) pixels mid grey."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True) * 0.35 + 160
    out = np.repeat(grey, 3, axis=2)
    ignored = label == ignore_index
    out[(prediction != label) & ~ignored] = WRONG
    out[ignored] = IGNORED
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def example_strips(segmenter: Segmenter, samples: Iterable[tuple[np.ndarray, np.ndarray]], count: int,
                   palette: Sequence[tuple[int, int, int]], ignore_index: int) -> list[dict[str, object]]:
    """Up to `count` PNG strips (photo | labels | prediction | errors), each with its share of wrong pixels."""
    strips = []
    for index, (image, label) in enumerate(samples):
        if index == count:
            break
        prediction = segmenter.predict(image)
        labelled = label != ignore_index
        wrong = float(((prediction != label) & labelled).sum() / max(1, labelled.sum()))
        shown_label = np.where(labelled, label, 0)
        panels = [Image.fromarray(image), mask_image(shown_label, palette).convert("RGB"),
                  mask_image(prediction, palette).convert("RGB"),
                  error_image(image, label, prediction, ignore_index)]
        height = PANEL_HEIGHT  # small images are enlarged, pixel for pixel, so their errors stay visible
        width = round(image.shape[1] * height / image.shape[0])
        strip = Image.new("RGB", (4 * width + 3 * 4, height), "white")
        for slot, panel in enumerate(panels):
            strip.paste(panel.resize((width, height), Image.NEAREST), (slot * (width + 4), 0))
        buffer = io.BytesIO()
        strip.save(buffer, format="PNG")
        strips.append({"index": index, "wrong_share": wrong, "png": buffer.getvalue()})
    return strips
