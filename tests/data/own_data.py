"""Writers of a team's own data in every form rdd-deploy reads, all from the same synthetic images and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from rdd_deploy.data.synthetic import NAMES, PALETTE, render

SIZE = 32
SPLITS = {"train": 4, "val": 2}


def samples(split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, uint8 RGB image, int64 label) of the synthetic split, small."""
    return [(f"{split}_{i:03d}", *render(0, split, i, SIZE)) for i in range(SPLITS[split])]


def colour_mask(label: np.ndarray) -> np.ndarray:
    return np.asarray(PALETTE, dtype=np.uint8)[label]


def write_folder(root: Path, colour: bool = False, **fields: object) -> Path:
    """images/<split>/*.png with masks/<split>/*.png (index PNGs, or RGB colour masks) and dataset.yaml."""
    for split in SPLITS:
        for stem, image, label in samples(split):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "images" / split / f"{stem}.png")
            mask = colour_mask(label) if colour else label.astype(np.uint8)
            Image.fromarray(mask).save(root / "masks" / split / f"{stem}.png")
    spec = {"names": list(NAMES), **({"palette": [list(c) for c in PALETTE]} if colour else {}), **fields}
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec))
    return root


def write_cvat(root: Path) -> Path:
    """A CVAT "Segmentation mask 1.1" export with Train and Validation subsets."""
    lines = ["# label:color_rgb:parts:actions"] + [f"{n}:{r},{g},{b}::" for n, (r, g, b) in zip(NAMES, PALETTE)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "labelmap.txt").write_text("\n".join(lines) + "\n")
    for split, subset in (("train", "Train"), ("val", "Validation")):
        stems = []
        for stem, image, label in samples(split):
            for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
                (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "JPEGImages" / f"{stem}.png")
            Image.fromarray(colour_mask(label)).save(root / "SegmentationClass" / f"{stem}.png")
            stems.append(stem)
        (root / "ImageSets" / "Segmentation" / f"{subset}.txt").write_text("\n".join(stems) + "\n")
    return root


def polygons(mask: np.ndarray) -> list[list[float]]:
    """The pixels of a boolean mask as row-run rectangles on pixel boundaries, which pycocotools fills exactly."""
    shapes = []
    for y in range(mask.shape[0]):
        row = np.concatenate([[0], mask[y].astype(np.int8), [0]])
        starts, ends = np.flatnonzero(np.diff(row) == 1), np.flatnonzero(np.diff(row) == -1)
        shapes += [[float(x0), float(y), float(x1), float(y), float(x1), float(y + 1), float(x0), float(y + 1)]
                   for x0, x1 in zip(starts, ends)]
    return shapes


def uncompressed_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO's uncompressed RLE: run lengths of 0s and 1s in column-major order, starting with 0s."""
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))  # 2: closes the last run
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}


def segmentation(mask: np.ndarray, form: str, index: int) -> object:
    """`mask` as polygons, or RLE alternating compressed and uncompressed."""
    from pycocotools import mask as mask_api

    if form == "polygons":
        return polygons(mask)
    if index % 2:
        return uncompressed_rle(mask)
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def write_coco(root: Path, form: str, layout: str = "roboflow") -> Path:
    """A COCO export: one object per class present in each image; Roboflow's layout (with its placeholder
    category) or COCO's annotations/instances_<split>.json with images/<split>/."""
    for split in SPLITS:
        folder = root / ("valid" if split == "val" else split) if layout == "roboflow" else root / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        categories = [{"id": i, "name": n, "supercategory": "shapes"} for i, n in enumerate(NAMES[1:], 1)]
        if layout == "roboflow":
            categories.insert(0, {"id": 0, "name": "shapes", "supercategory": "none"})
        images, annotations = [], []
        for number, (stem, image, label) in enumerate(samples(split)):
            Image.fromarray(image).save(folder / f"{stem}.png")
            images.append({"id": number + 10, "file_name": f"{stem}.png", "height": SIZE, "width": SIZE})
            for cls in np.unique(label[label > 0]):
                annotations.append({"id": len(annotations) + 1, "image_id": number + 10, "category_id": int(cls),
                                    "iscrowd": 0, "segmentation": segmentation(label == cls, form, len(annotations))})
        spec = {"images": images, "annotations": annotations, "categories": categories}
        target = folder / "_annotations.coco.json" if layout == "roboflow" else \
            root / "annotations" / f"instances_{split}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(spec))
    return root
