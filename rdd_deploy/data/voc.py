"""Pascal VOC 2012 with the SBD augmented training set (train_aug, 10582) and the official val (1449)."""

from __future__ import annotations

from pathlib import Path

from rdd_deploy.data.base import Augment, DatasetInfo, SegmentationDataset, label_table, list_pairs, require_dir
from rdd_deploy.errors import RDDError

NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
         "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def voc_palette(count: int) -> list[tuple[int, int, int]]:
    """The official VOC colour map (VOCdevkit's labelcolormap): bits of the class id spread over R, G, B."""
    colours = []
    for index in range(count):
        rgb, value = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colours.append((rgb[0], rgb[1], rgb[2]))
    return colours


INFO = DatasetInfo("voc", len(NAMES), NAMES, palette=voc_palette(len(NAMES)))
TABLE = label_table({i: i for i in range(len(NAMES))}, valid_ignored=[255])
# split -> (list file name, label folder): SBD-converted labels for train_aug, the official ones for val
SPLITS = {"train": ("train_aug.txt", "SegmentationClassAug"), "val": ("val.txt", "SegmentationClass")}


def list_file(root: Path, name: str) -> Path:
    """ImageSets/Segmentation/<name>, or <name> at the root (where many SBD downloads put train_aug.txt)."""
    for candidate in (root / "ImageSets" / "Segmentation" / name, root / name):
        if candidate.is_file():
            return candidate
    raise RDDError(f"VOC list file not found: {root / 'ImageSets' / 'Segmentation' / name} (nor {root / name})")


def read_ids(path: Path) -> list[str]:
    """Image ids of a list file; lines may also be 'JPEGImages/x.jpg SegmentationClassAug/x.png' pairs."""
    ids = []
    for line in path.read_text().splitlines():
        if line.strip():
            ids.append(Path(line.split()[0]).stem)
    return ids


def build(root: Path, split: str, augment: Augment, max_images: int | None) -> SegmentationDataset:
    """The VOC split `split` under `root` (the VOC2012 folder holding JPEGImages/)."""
    list_name, label_folder = SPLITS[split]
    images = require_dir(root / "JPEGImages", "VOC image folder")
    labels = require_dir(root / label_folder, "VOC label folder")
    ids = read_ids(list_file(root, list_name))
    missing = next((i for i in ids if not (images / f"{i}.jpg").is_file()), None)
    if missing is not None:
        raise RDDError(f"image {images / f'{missing}.jpg'} listed in {list_name} not found")
    pairs = list_pairs((images / f"{i}.jpg" for i in ids), lambda image: labels / f"{image.stem}.png",
                       root / list_name, max_images)
    return SegmentationDataset(INFO, pairs, TABLE, augment)
