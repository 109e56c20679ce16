"""`check-data`: read every image and mask of a data set once, in parallel, and report all that is wrong.

Problems (each one line naming a file): an image that does not open, a missing or JPEG mask, a mask of another
size than its image, mask values or colours that are no class (with their pixel count and an example file),
an image in two splits (same decoded pixels), an empty split. Statistics: per-split counts and image sizes,
each class's pixel share and the number of images it appears in, rare classes, the ignored share.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rdd_deploy.data.base import IGNORE_INDEX, read_rgb
from rdd_deploy.errors import RDDError

REQUIRED_SPLITS = ("train", "val")
RARE_IMAGES = 5  # a class in fewer training images than this is flagged
RARE_SHARE = 0.001  # ... or one that covers less than this share of the labelled training pixels


@dataclass
class Item:
    """What reading one (image, mask) pair found."""

    image: str
    size: tuple[int, int] | None = None
    digest: str | None = None
    counts: np.ndarray | None = None  # pixels per class, then the ignored pixels
    unknown: dict[str, int] = field(default_factory=dict)
    source: str = ""
    problems: list[str] = field(default_factory=list)


def inspect(dataset: Any, index: int) -> Item:
    """Decode item `index`'s image and label; every failure becomes a problem line, never an exception."""
    item = Item(str(dataset.image_path(index)), source=dataset.label_source(index))
    image = label = None
    try:
        image = read_rgb(dataset.image_path(index))
        item.size = image.shape[:2]
        # decoded pixels, not file bytes: the same photo saved twice (or re-encoded losslessly) is one image
        item.digest = hashlib.blake2b(image.tobytes(), digest_size=16, person=str(image.shape).encode()[:16]
                                      ).hexdigest()
    except RDDError as exc:
        item.problems.append(str(exc))
    try:
        label, item.unknown = dataset.read_labels(index)
    except RDDError as exc:
        item.problems.append(str(exc))
    if label is not None:
        classes = dataset.info.num_classes
        counts = np.bincount(label.ravel(), minlength=IGNORE_INDEX + 1)  # train ids: 0..classes-1 and 255
        item.counts = np.append(counts[:classes], counts[IGNORE_INDEX])
        if image is not None and image.shape[:2] != label.shape:
            item.problems.append(f"image {item.image} is {image.shape[0]}x{image.shape[1]} but its label "
                                 f"{item.source} is {label.shape[0]}x{label.shape[1]}")
    return item


def _split_stats(items: list[Item], num_classes: int) -> dict[str, Any]:
    counted = [i.counts for i in items if i.counts is not None]
    counts = np.sum(counted, axis=0) if counted else np.zeros(num_classes + 1, dtype=np.int64)
    presence = np.sum([c[:num_classes] > 0 for c in counted], axis=0) if counted else np.zeros(num_classes, int)
    labelled = max(int(counts[:num_classes].sum()), 1)
    sizes = Counter(f"{i.size[0]}x{i.size[1]}" for i in items if i.size is not None)
    return {"images": len(items), "sizes": dict(sizes.most_common()),
            "ignored_share": float(counts[num_classes] / max(int(counts.sum()), 1)),
            "class_share": [float(c / labelled) for c in counts[:num_classes]],
            "class_images": [int(n) for n in presence]}


def _value_problems(items: list[Item], info: Any) -> list[str]:
    """One line per stray mask value or colour: its pixels, the masks holding it, an example file."""
    pixels: Counter[str] = Counter()
    masks: Counter[str] = Counter()
    example: dict[str, str] = {}
    for item in items:
        for what, count in item.unknown.items():
            pixels[what] += count
            masks[what] += 1
            example.setdefault(what, item.source)
    classes = f"{info.num_classes} classes"
    return [f"{what} is no class of the data set ({classes}): {plural(pixels[what], 'pixel')} in "
            f"{plural(masks[what], 'mask')}, e.g. {example[what]}" for what in sorted(pixels)]


def plural(count: int, noun: str) -> str:
    """'1 mask', '2 masks'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def open_splits(spec: str) -> tuple[dict[str, Any], list[str]]:
    """Every split of a folder: or coco: data set, and the problems pairing its files found."""
    from rdd_deploy.data import coco, folder
    from rdd_deploy.data.base import Augment
    from rdd_deploy.data.describe import SPLITS, describe

    kind, _, argument = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in ("folder", "coco"):
        raise RDDError(f"check-data reads folder:PATH and coco:PATH data sets, not '{spec}'")
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise RDDError(f"{kind} root folder not found: {root}")
    problems: list[str] = []
    datasets: dict[str, Any] = {}
    if kind == "coco":
        files = coco.split_files(root)
        info = coco.dataset_info(root, files)
        datasets = {split: coco.CocoDataset(info, *where, Augment(), None) for split, where in files.items()}
    else:
        description = describe(root)
        present = (list(description.list_files) if description.list_files
                   else [s for s in SPLITS if (description.images / s).is_dir()])
        for split in present:
            pairs, found = folder.list_split(description, split)
            problems.extend(found)
            datasets[split] = folder.FolderDataset(description, pairs, Augment())
    problems.extend(f"data set {root} has no '{split}' split" for split in REQUIRED_SPLITS if split not in datasets)
    if not datasets:
        raise RDDError(problems[0])
    return datasets, problems


def check(spec: str, workers: int | None = None,
          on_item: Callable[[], None] | None = None) -> dict[str, Any]:
    """The report of `check-data` for data set `spec`: splits, classes, and problems (empty when all is well)."""
    datasets, problems = open_splits(spec)
    info = next(iter(datasets.values())).info
    jobs = [(split, dataset, index) for split, dataset in datasets.items() for index in range(len(dataset))]

    def run(job: tuple[str, Any, int]) -> Item:
        item = inspect(job[1], job[2])
        if on_item is not None:
            on_item()
        return item

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = list(pool.map(run, jobs))
    by_split: dict[str, list[Item]] = {split: [] for split in datasets}
    for (split, _, _), item in zip(jobs, results):
        by_split[split].append(item)
        problems.extend(item.problems)
    problems.extend(_value_problems(results, info))
    seen: dict[str, tuple[str, str]] = {}
    for split, items in by_split.items():
        for item in items:
            if item.digest is None:
                continue
            first = seen.setdefault(item.digest, (split, item.image))
            if first[0] != split:
                problems.append(f"image {item.image} ({split}) has the same pixels as {first[1]} ({first[0]}); "
                                "an image in two splits inflates the validation score")
    stats = {split: _split_stats(items, info.num_classes) for split, items in by_split.items()}
    train = stats.get("train")
    classes = []
    for index, class_name in enumerate(info.class_names):
        row: dict[str, Any] = {"name": class_name}
        for split, numbers in stats.items():
            row[f"{split}_share"], row[f"{split}_images"] = (numbers["class_share"][index],
                                                            numbers["class_images"][index])
        row["rare"] = train is not None and (train["class_images"][index] < RARE_IMAGES
                                             or train["class_share"][index] < RARE_SHARE)
        classes.append(row)
    for numbers in stats.values():
        del numbers["class_share"], numbers["class_images"]
    return {"data": spec, "classes": classes, "splits": stats, "problems": problems}
