"""A procedural segmentation data set that ships as code, so every command runs with no download.

Each image is drawn on the fly from (seed, split, index) with numpy's own generator (never a global RNG).
The seven object classes are the crossings of four shapes with four textures; each shares its shape with
one class and its texture with another. Colour is only a hint: classes come in hue families of two (or
one), objects take an off-family hue now and then, and the background clutter wears the same hues and
textures on elongated blobs. So colour narrows a pixel down to a few classes, the texture around it (a few
periods) or the object's outline (tens of pixels) has to settle it, and what a bigger receptive field and
more capacity buy shows in the score. Objects occlude each other and clutter occludes objects. Training
labels are slightly wrong on purpose (jittered outlines, a few objects labelled with the confusable class), so
some pixels stay genuinely hard to learn from; validation labels are the true outlines and classes, so a score
measures what a model should predict (the usual protocol for learning from noisy labels). The images of a split
do not depend on that: the same random numbers are drawn for both.
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache

from typing import TYPE_CHECKING

import numpy as np

from rdd_deploy.data.base import Augment, DatasetInfo, to_tensors
from rdd_deploy.errors import RDDError

if TYPE_CHECKING:
    import torch

# class id -> (shape, texture); 0 is background
CLASSES = ((None, None), ("disc", "stripes"), ("disc", "checks"), ("square", "stripes"), ("square", "dots"),
           ("triangle", "checks"), ("triangle", "dots"), ("ring", "plain"))
NAMES = ("background",) + tuple(f"{texture} {shape}" for shape, texture in CLASSES[1:])
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240)]
INFO = DatasetInfo("synthetic", len(NAMES), NAMES, palette=PALETTE)
# the class sharing an object's shape: what a deliberately mislabelled object is called instead
CONFUSABLE = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5, 7: 1}
TEXTURES = ("stripes", "checks", "dots", "plain")
HUES = (0.0, 0.33, 0.6, 0.14)  # red, green, blue, yellow families
FAMILY = {1: 0, 5: 0, 2: 1, 4: 1, 3: 2, 6: 2, 7: 3}  # pairs that differ in both shape and texture share a hue
OFF_FAMILY_RATE = 0.05  # objects painted in another family's hue, so colour never decides alone
# mislabel: the percentage of training objects labelled with the confusable class
DEFAULTS = {"size": 128, "train": 512, "val": 64, "seed": 0, "mislabel": 4}
SPLIT_CODES = {"train": 0, "val": 1}
OUTLINE_JITTER = 0.06  # std of the relative radius difference between drawn and labelled outlines
# Sized so that textures stay a few pixels wide and shapes span several 1/8-resolution cells at 64x64, the
# quickstart's size; with periods of 0.04-0.08 and 15 % off-family objects an 800-iteration ResNet-18 x0.5
# reached 32 % val mIoU at 64x64, 36 % with these (same seed and recipe).
TEXTURE_PERIOD = (0.08, 0.14)  # of the image size
OBJECT_RADIUS = (0.16, 0.30)  # of the image size
OBJECTS = (4, 7)  # objects per image, drawn from [low, high)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates, shared by every image of one size."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return ys, xs


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in the object's own unit coordinates (radius 1 = the object's size)."""
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "ring":
        rho = u * u + v * v
        return (rho <= 1.0) & (rho >= 0.3)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # equilateral, inscribed in the unit circle
        return (v >= -0.5) & (0.866 * u + 0.5 * v <= 0.5) & (-0.866 * u + 0.5 * v <= 0.5)
    if shape == "blob":  # clutter: an ellipse, u already stretched by the caller
        return u * u + v * v <= 1.0
    raise ValueError(shape)


def _texture(kind: str, xs: np.ndarray, ys: np.ndarray, period: float, angle: float, u: np.ndarray) -> np.ndarray:
    """A 0..1 pattern over pixel coordinates: the mix weight between an object's two colours."""
    cos, sin = math.cos(angle) / period, math.sin(angle) / period
    s, t = xs * cos + ys * sin, ys * cos - xs * sin
    if kind == "stripes":
        return (s % 1.0 < 0.5).astype(np.float32)
    if kind == "checks":
        return ((np.floor(2 * s) + np.floor(2 * t)) % 2).astype(np.float32)
    if kind == "dots":
        return (((s % 1.0 - 0.5) ** 2 + (t % 1.0 - 0.5) ** 2) < 0.09).astype(np.float32)
    return np.clip(0.25 + 0.25 * u, 0.0, 0.5)  # plain: a soft shading, no pattern


def _colours(rng: np.random.Generator, family: int) -> np.ndarray:
    """A dark and a light shade of one family's hue, in random order, so the texture shows whatever the hue."""
    hue = (HUES[family] + rng.normal(0.0, 0.03)) % 1.0
    saturation = rng.uniform(0.4, 1.0)
    shades = [colorsys.hsv_to_rgb(hue, saturation, rng.uniform(*value)) for value in ((0.15, 0.45), (0.65, 1.0))]
    return (np.asarray(shades, dtype=np.float32) * 255)[rng.permutation(2)]


def _paint(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, shape: str, texture: str,
           family: int, cls: int, noisy: bool, stretch: float = 1.0) -> None:
    """Draw one textured shape at a random place, size, rotation and colour pair; label its (jittered) outline."""
    size = image.shape[0]
    # python floats, not numpy float64 scalars, keep the float32 pixel maths in float32 (NEP 50 promotion)
    radius = size * float(rng.uniform(0.035, 0.08) if shape == "blob" else rng.uniform(*OBJECT_RADIUS))
    cy, cx = map(float, rng.uniform(0, size, 2))
    rotation, angle = map(float, rng.uniform(0, 2 * np.pi, 2))
    period = size * float(rng.uniform(*TEXTURE_PERIOD))
    colours = _colours(rng, family)
    reach = radius * max(stretch, 1.0) * 1.2
    y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, size))
    x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, size))
    if y1 <= y0 or x1 <= x0:
        return
    grid_y, grid_x = _grid(size)
    ys, xs = grid_y[y0:y1, x0:x1], grid_x[y0:y1, x0:x1]
    dy, dx = (ys - cy) / radius, (xs - cx) / radius
    cos, sin = math.cos(rotation), math.sin(rotation)
    u = (dx * cos + dy * sin) / stretch
    v = dy * cos - dx * sin
    mask = _shape_mask(shape, u, v)
    mix = _texture(texture, xs[mask], ys[mask], period, angle, u[mask])  # only where the shape is drawn
    image[y0:y1, x0:x1][mask] = colours[0] + (colours[1] - colours[0]) * mix[:, None]
    jitter = rng.normal(0.0, OUTLINE_JITTER)  # drawn for every split, so images do not depend on the split's noise
    scale = 1.0 + jitter if noisy else 1.0
    label[y0:y1, x0:x1][_shape_mask(shape, u / scale, v / scale)] = cls


def render(seed: int, split: str, index: int, size: int, mislabel: float = DEFAULTS["mislabel"] / 100
           ) -> tuple[np.ndarray, np.ndarray]:
    """Image `index` of `split`: (HxWx3 uint8 RGB, HxW int64 label), identical on every call and machine; a
    training object is labelled with its confusable class with probability `mislabel`."""
    rng = np.random.default_rng((seed, SPLIT_CODES[split], index))
    noisy = split == "train"  # noisy annotations to learn from, clean ones to score against
    grid_y, grid_x = _grid(size)
    # background: a gradient between two greyish colours
    ends = np.asarray([colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.3, 0.9))
                       for _ in range(2)], dtype=np.float32) * 255
    angle = float(rng.uniform(0, 2 * np.pi))
    ramp = ((grid_x * math.cos(angle) + grid_y * math.sin(angle)) / (size * 1.5) + 0.5)[..., None]
    image = ends[0] + (ends[1] - ends[0]) * np.clip(ramp, 0.0, 1.0)
    label = np.zeros((size, size), dtype=np.int64)

    def clutter() -> None:  # an elongated background blob in any family's hue and any texture
        _paint(image, label, rng, "blob", TEXTURES[rng.integers(4)], int(rng.integers(4)), 0, noisy,
               float(rng.uniform(2.5, 5.0)))

    for _ in range(rng.integers(2, 5)):
        clutter()
    for _ in range(rng.integers(*OBJECTS)):
        cls = int(rng.integers(1, len(CLASSES)))
        shape, texture = CLASSES[cls]
        family = int(rng.integers(4)) if rng.random() < OFF_FAMILY_RATE else FAMILY[cls]
        mislabelled = rng.random() < mislabel  # drawn on every split, as the jitter
        _paint(image, label, rng, shape, texture, family, CONFUSABLE[cls] if mislabelled and noisy else cls, noisy)
    for _ in range(rng.integers(0, 3)):  # clutter in front: occludes objects
        clutter()
    contrast, brightness, noise = map(float, (rng.uniform(0.6, 1.2), rng.uniform(-30, 30), rng.uniform(2, 6)))
    image = (image - 128) * contrast + (128 + brightness) + noise * rng.standard_normal((size, size, 1), np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


class SyntheticDataset:
    """The procedural data set: same interface as the file-backed ones, with no files."""

    def __init__(self, split: str, augment: Augment, size: int, count: int, seed: int,
                 mislabel: float = DEFAULTS["mislabel"] / 100) -> None:
        self.info, self.split, self.augment = INFO, split, augment
        self.size, self.count, self.seed, self.mislabel = size, count, seed, mislabel
        # Rendering costs as much as a small student's training step; a few MB keep every image once drawn.
        self._rendered: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.count

    def image_path(self, index: int) -> None:
        """Synthetic images have no source file."""
        return None

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB image, HxW int64 label) with no augmentation."""
        if not 0 <= index < self.count:
            raise IndexError(f"synthetic {self.split} has {self.count} images, no index {index}")
        if index not in self._rendered:
            self._rendered[index] = render(self.seed, self.split, index, self.size, self.mislabel)
        return self._rendered[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(*self.raw(index), self.augment)


def majority_floor(dataset: SyntheticDataset) -> float:
    """The mIoU of predicting background everywhere: the score a student stuck at the majority class gets."""
    counts = sum(np.bincount(dataset.raw(i)[1].ravel(), minlength=len(NAMES)) for i in range(len(dataset)))
    return float(counts[0] / counts.sum() / len(NAMES))


def parse_options(options: str) -> dict[str, int]:
    """'size=96,train=256' -> settings over DEFAULTS; anything else is an error that lists the keys."""
    settings = dict(DEFAULTS)
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        if key not in DEFAULTS or not value.strip().isdigit():
            raise RDDError(f"bad synthetic option '{item}': use synthetic or synthetic:key=N,... with keys "
                           f"{', '.join(DEFAULTS)} (e.g. synthetic:size=96,train=256)")
        settings[key] = int(value)
    if settings["mislabel"] > 100:
        raise RDDError(f"synthetic mislabel={settings['mislabel']} is a percentage; use 0 to 100")
    if settings["size"] < 32:
        raise RDDError(f"synthetic size={settings['size']} is too small; use at least 32")
    return settings


def build(options: str, split: str, augment: Augment, max_images: int | None) -> SyntheticDataset:
    """The synthetic split `split` with 'key=N,...' options (size, train, val, seed, mislabel)."""
    settings = parse_options(options)
    count = settings[split] if max_images is None else min(settings[split], max_images)
    if count < 1:
        raise RDDError(f"synthetic {split} split is empty ({split}={settings[split]})")
    return SyntheticDataset(split, augment, settings["size"], count, settings["seed"], settings["mislabel"] / 100)
