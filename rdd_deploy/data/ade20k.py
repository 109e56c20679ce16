"""ADE20K (SceneParsing / ADEChallengeData2016): images/{training,validation}/*.jpg with annotations/.../*.png."""

from __future__ import annotations

import colorsys
from pathlib import Path

from rdd_deploy.data.base import Augment, DatasetInfo, SegmentationDataset, label_table, list_pairs, require_dir

# objectInfo150 names in label order (label 1 = wall), shortened to their first synonym as in mmsegmentation.
NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step",
    "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


def golden_palette(count: int) -> list[tuple[int, int, int]]:
    """Distinct deterministic colours: hues stepped by the golden ratio, three brightness levels."""
    colours = []
    for index in range(count):
        hue = (index * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, (1.0, 0.8, 0.6)[index % 3])
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


INFO = DatasetInfo("ade20k", len(NAMES), NAMES, palette=golden_palette(len(NAMES)))
TABLE = label_table({raw: raw - 1 for raw in range(1, len(NAMES) + 1)}, valid_ignored=[0])  # 0 = "other"
SPLITS = {"train": "training", "val": "validation"}


def build(root: Path, split: str, augment: Augment, max_images: int | None) -> SegmentationDataset:
    """The ADE20K split `split`; `root` is ADEChallengeData2016/ or the folder that holds it."""
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    images = require_dir(root / "images" / SPLITS[split], "ADE20K image folder")
    labels = require_dir(root / "annotations" / SPLITS[split], "ADE20K label folder")
    pairs = list_pairs(images.glob("*.jpg"), lambda image: labels / f"{image.stem}.png", images, max_images)
    return SegmentationDataset(INFO, pairs, TABLE, augment)
