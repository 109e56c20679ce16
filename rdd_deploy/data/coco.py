"""`coco:/path`: COCO annotations as CVAT, Label Studio and Roboflow export them, rendered into semantic masks.

Layouts: Roboflow's <split>/_annotations.coco.json beside the split's images (validation in valid/ or val/), or
COCO's annotations/instances_<split>.json with the images in <split>/ or images/<split>/.
Classes: `background` (every pixel no object covers), then the categories in the file's order, without
Roboflow's project-named placeholder (a category that is another's supercategory and that no object uses).
Overlaps: objects are painted largest first, so a smaller object lying on a larger one stays visible (equal
areas: the later object in the file wins); `iscrowd` regions are painted last as ignored pixels (255).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rdd_deploy.data.base import IGNORE_INDEX, Augment, DatasetInfo, read_rgb, to_tensors
from rdd_deploy.data.describe import SPLITS, default_palette
from rdd_deploy.errors import RDDError

if TYPE_CHECKING:
    import torch

SPLIT_FOLDERS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}
ROBOFLOW_FILE = "_annotations.coco.json"


def mask_api() -> Any:
    """pycocotools.mask, or the one-line advice to install it."""
    try:
        from pycocotools import mask
    except ImportError:
        raise RDDError('coco: data sets need pycocotools: pip install "rdd-deploy[coco]" (the [train] extra '
                       "includes it)") from None
    return mask


def locate(root: Path, split: str) -> tuple[Path, Path] | None:
    """(annotation file, image folder) of `split`, or None when the export has no such split."""
    for name in SPLIT_FOLDERS[split]:
        if (root / name / ROBOFLOW_FILE).is_file():
            return root / name / ROBOFLOW_FILE, root / name
        annotations = root / "annotations" / f"instances_{name}.json"
        if annotations.is_file():
            images = next((p for p in (root / name, root / "images" / name) if p.is_dir()), None)
            if images is None:
                raise RDDError(f"images of {annotations} not found: expected {root / name} or {root / 'images' / name}")
            return annotations, images
    return None


def read_json(path: Path) -> dict[str, Any]:
    """A COCO file with its three lists, or an error naming the file and the missing key."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RDDError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = next((key for key in ("images", "annotations", "categories") if not isinstance(spec.get(key), list)),
                   None) if isinstance(spec, dict) else "images"
    if missing is not None:
        raise RDDError(f"{path}: no '{missing}' list; is it a COCO annotation file?")
    return spec


def class_categories(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The categories that become classes: all but a supercategory placeholder that no object uses."""
    used = {a.get("category_id") for a in spec["annotations"]}
    parents = {c.get("supercategory") for c in spec["categories"]}
    return [c for c in spec["categories"] if c["id"] in used or c["name"] not in parents]


def split_files(root: Path) -> dict[str, tuple[Path, Path]]:
    """Every split the export has: split -> (annotation file, image folder)."""
    found = {split: locate(root, split) for split in SPLITS}
    present = {split: where for split, where in found.items() if where is not None}
    if not present:
        raise RDDError(f"no COCO annotations in {root}: expected <split>/{ROBOFLOW_FILE} (Roboflow) or "
                       "annotations/instances_<split>.json")
    return present


def dataset_info(root: Path, files: dict[str, tuple[Path, Path]]) -> DatasetInfo:
    """background + the categories, which every split's file must list alike."""
    names, first = None, None
    for annotation_file, _ in files.values():
        these = [c["name"] for c in class_categories(read_json(annotation_file))]
        if names is None:
            names, first = these, annotation_file
        elif these != names:
            raise RDDError(f"{annotation_file} lists the categories {these}, {first} lists {names}; every split must "
                           "have the same categories in the same order")
    classes = ("background", *names)
    return DatasetInfo(root.name, len(classes), classes, palette=default_palette(len(classes)))


class CocoDataset:
    """Images of one COCO split with their objects rendered into train-id labels."""

    def __init__(self, info: DatasetInfo, annotations: Path, folder: Path, augment: Augment,
                 max_images: int | None) -> None:
        self.info, self.annotations, self.augment = info, annotations, augment  # picklable for DataLoader workers
        spec = read_json(annotations)
        classes = {c["id"]: index for index, c in enumerate(class_categories(spec), 1)}
        images = sorted(spec["images"], key=lambda record: record["file_name"])[:max_images]
        self.records = images
        self.pairs = [(folder / record["file_name"], annotations) for record in images]
        objects: dict[Any, list[dict[str, Any]]] = {record["id"]: [] for record in images}
        for annotation in spec["annotations"]:
            if annotation.get("category_id") not in classes:
                raise RDDError(f"{annotations}: annotation {annotation.get('id')} has category_id "
                               f"{annotation.get('category_id')}, which no category (class) defines")
            if not annotation.get("segmentation"):
                raise RDDError(f"{annotations}: annotation {annotation.get('id')} has no segmentation (a box "
                               "only); semantic segmentation needs polygons or RLE masks")
            if annotation.get("image_id") in objects:
                objects[annotation["image_id"]].append({**annotation, "class": classes[annotation["category_id"]]})
        self.objects = objects
        if not images:
            raise RDDError(f"{annotations} lists no images")

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        """The source image file of item `index`."""
        return self.pairs[index][0]

    def label_source(self, index: int) -> str:
        """The annotation file and image that item `index`'s label comes from."""
        return f"{self.annotations} ({self.records[index]['file_name']})"

    def _rle(self, annotation: dict[str, Any], height: int, width: int) -> Any:
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):  # polygons: pycocotools reads a 4-number list as a box, so refuse it
            if any(len(polygon) < 6 for polygon in segmentation):
                raise RDDError(f"{self.annotations}: annotation {annotation.get('id')} has a polygon of fewer "
                               "than 3 points")
            return mask_api().merge(mask_api().frPyObjects(segmentation, height, width))
        if isinstance(segmentation.get("counts"), list):  # uncompressed RLE (usual for iscrowd objects)
            return mask_api().frPyObjects(segmentation, height, width)
        return segmentation  # compressed RLE

    def read_labels(self, index: int) -> tuple[np.ndarray, dict[str, int]]:
        """(HxW train ids, {}) of item `index`: its objects painted by the documented overlap rule."""
        record = self.records[index]
        height, width = int(record["height"]), int(record["width"])
        label = np.zeros((height, width), dtype=np.int64)
        decode = mask_api().decode
        objects = [(decode(self._rle(a, height, width)).astype(bool), a) for a in self.objects[record["id"]]]
        solid = sorted((o for o in objects if not o[1].get("iscrowd")), key=lambda o: -int(o[0].sum()))
        for pixels, annotation in solid:  # sorted() is stable: among equal areas, file order
            label[pixels] = annotation["class"]
        for pixels, _ in (o for o in objects if o[1].get("iscrowd")):
            label[pixels] = IGNORE_INDEX
        return label, {}

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB image, HxW int64 train-id label) with no augmentation."""
        image = read_rgb(self.image_path(index))
        label, _ = self.read_labels(index)
        if image.shape[:2] != label.shape:
            raise RDDError(f"image {self.image_path(index)} is {image.shape[0]}x{image.shape[1]} but "
                           f"{self.annotations} gives it {label.shape[0]}x{label.shape[1]}")
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(*self.raw(index), self.augment)


def build(root: Path, split: str, augment: Augment, max_images: int | None) -> CocoDataset:
    """Split `split` of the COCO export at `root`."""
    mask_api()
    files = split_files(root)
    if split not in files:
        raise RDDError(f"COCO export {root} has no split '{split}'; it has: {', '.join(files)}")
    return CocoDataset(dataset_info(root, files), *files[split], augment, max_images)
