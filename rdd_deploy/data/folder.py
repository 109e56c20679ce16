"""`folder:/path`: a user's own images and masks, described by dataset.yaml or exported by CVAT as they are.

Pairs are matched by file stem: images/<split>/<stem>.<jpg|png|...> with masks/<split>/<stem>.png (subfolders
mirrored), or the stems (or `image mask` path pairs) of a per-split list file, looked up in images/ and masks/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rdd_deploy.data.base import Augment, SegmentationDataset, read_rgb
from rdd_deploy.data.describe import SPLITS, Description, describe
from rdd_deploy.errors import RDDError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_SUFFIXES = (".jpg", ".jpeg")


def image_index(folder: Path) -> dict[str, Path]:
    """Stem (path relative to `folder`, without suffix) -> image file; two images with one stem are an error."""
    index: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            stem = path.relative_to(folder).with_suffix("").as_posix()
            if stem in index:
                raise RDDError(f"images {index[stem]} and {path} share the stem '{stem}'; masks pair by stem")
            index[stem] = path
    return index


def _listed(description: Description, split: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pairs from a list file: one stem a line, or `image mask` paths relative to the root."""
    list_file = description.list_files[split]
    if not list_file.is_file():
        raise RDDError(f"list file of split '{split}' not found: {list_file}")
    images = image_index(description.images) if description.images.is_dir() else {}
    pairs, problems = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        fields = line.split()
        if len(fields) == 2:
            pairs.append((description.root / fields[0], description.root / fields[1]))
        elif len(fields) == 1:
            stem = Path(fields[0]).with_suffix("").as_posix() if Path(fields[0]).suffix.lower() in IMAGE_SUFFIXES \
                else fields[0]
            if stem not in images:
                problems.append(f"{list_file} line {number}: no image '{stem}' in {description.images}")
                continue
            pairs.append((images[stem], description.masks / f"{stem}.png"))
        elif fields:
            raise RDDError(f"{list_file} line {number}: expected a stem or 'image mask', got '{line}'")
    return pairs, problems


def list_split(description: Description, split: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, mask) pairs of `split` and the problems found while pairing (missing or JPEG masks, no images)."""
    if split not in SPLITS:
        raise RDDError(f"unknown split '{split}'; use one of: {', '.join(SPLITS)}")
    if description.list_files:
        if split not in description.list_files:
            raise RDDError(f"data set {description.root} has no split '{split}'; it has: "
                           f"{', '.join(description.list_files)}")
        pairs, problems = _listed(description, split)
        where = description.list_files[split]
    else:
        where = description.images / split
        if not where.is_dir():
            present = [s for s in SPLITS if (description.images / s).is_dir()]
            raise RDDError(f"data set {description.root} has no split '{split}' (no folder {where}); it has: "
                           f"{', '.join(present) or 'none'}")
        pairs = [(image, description.masks / split / f"{stem}.png")
                 for stem, image in image_index(where).items()]
        problems = []
    kept = []
    for image, mask in pairs:
        if mask.is_file():
            kept.append((image, mask))
            continue
        jpeg = next((mask.with_suffix(s) for s in JPEG_SUFFIXES if mask.with_suffix(s).is_file()), None)
        problems.append(f"mask {jpeg} is a JPEG: lossy compression changes class values at object edges; save "
                        "masks as PNG" if jpeg else f"image {image} has no mask (expected {mask})")
    if not pairs:
        problems.append(f"split '{split}' is empty: no images in {where}")
    return kept, problems


class FolderDataset(SegmentationDataset):
    """(image, mask) files of a folder data set; masks decoded by the data set's MaskCodec."""

    def __init__(self, description: Description, pairs: list[tuple[Path, Path]], augment: Augment) -> None:
        super().__init__(description.info, pairs, description.codec.index_table(), augment)
        self.codec = description.codec

    def read_labels(self, index: int) -> tuple[np.ndarray, dict[str, int]]:
        """(HxW train ids, counts of values or colours that are no class) of item `index`'s mask."""
        return self.codec.decode(self.pairs[index][1])

    def label_source(self, index: int) -> str:
        """The file item `index`'s label comes from."""
        return str(self.pairs[index][1])

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB image, HxW int64 train-id label) with no augmentation."""
        image_path, mask_path = self.pairs[index]
        image = read_rgb(image_path)
        label, unknown = self.read_labels(index)
        if unknown:
            what, count = next(iter(unknown.items()))
            raise RDDError(f"mask {mask_path} contains {what} ({count} pixels), which is no class of "
                           f"{self.info.name}; `rdd-deploy check-data` lists every such value")
        if image.shape[:2] != label.shape:
            raise RDDError(f"image {image_path} is {image.shape[0]}x{image.shape[1]} but its mask {mask_path} "
                           f"is {label.shape[0]}x{label.shape[1]}")
        return image, label


def build(root: Path, split: str, augment: Augment, max_images: int | None) -> FolderDataset:
    """Split `split` of the folder data set at `root`; the first pairing problem is an error."""
    description = describe(root)
    pairs, problems = list_split(description, split)
    if problems:
        raise RDDError(problems[0] + (f" (and {len(problems) - 1} more problems: rdd-deploy check-data "
                                      f"folder:{root})" if len(problems) > 1 else ""))
    return FolderDataset(description, pairs[:max_images], augment)
