"""Cityscapes: leftImg8bit/{split}/<city>/*_leftImg8bit.png with gtFine/{split}/<city>/*_gtFine_labelIds.png."""

from __future__ import annotations

from pathlib import Path

from rdd_deploy.data.base import Augment, DatasetInfo, SegmentationDataset, label_table, list_pairs, require_dir

# The 19 evaluated classes in trainId order with their official colours (cityscapesscripts' label table).
CLASSES = (("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)),
           ("wall", (102, 102, 156)), ("fence", (190, 153, 153)), ("pole", (153, 153, 153)),
           ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)),
           ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)), ("person", (220, 20, 60)),
           ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)), ("bus", (0, 60, 100)),
           ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)))
INFO = DatasetInfo("cityscapes", len(CLASSES), tuple(n for n, _ in CLASSES), palette=[c for _, c in CLASSES])
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
# Every other labelId (void, license plate = -1 stored as 255, anything else) is ignored rather than an error.
TABLE = label_table({raw: train for train, raw in enumerate(LABEL_IDS)},
                    valid_ignored=[v for v in range(256) if v not in LABEL_IDS])
SPLITS = {"train": "train", "val": "val"}
IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"


def build(root: Path, split: str, augment: Augment, max_images: int | None) -> SegmentationDataset:
    """The Cityscapes fine-annotation split `split` under `root`."""
    images = require_dir(root / "leftImg8bit" / SPLITS[split], "Cityscapes image folder")
    labels = require_dir(root / "gtFine" / SPLITS[split], "Cityscapes label folder")

    def label_of(image: Path) -> Path:
        return labels / image.parent.name / image.name.replace(IMAGE_SUFFIX, LABEL_SUFFIX)

    pairs = list_pairs(images.glob(f"*/*{IMAGE_SUFFIX}"), label_of, images, max_images)
    return SegmentationDataset(INFO, pairs, TABLE, augment)
