"""What every data set shares: its description, strict image/label reading, and the dataset class itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize, source_channels

if TYPE_CHECKING:
    import torch

# Readers import no torch, so `rdd-deploy validate` works in the runtime-only install; only the training
# tensors (ds[i]) need it. torch's DataLoader takes any object with __len__ and __getitem__.
IGNORE_INDEX = 255  # the label value every data set maps its unlabelled pixels to
INVALID = -1  # lookup-table entry for a raw label value the data set never uses: loading it is an error


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and its exported metadata need to know about a data set's classes."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    ignore_index: int = IGNORE_INDEX
    palette: list[tuple[int, int, int]] = field(kw_only=True)  # one RGB colour per class, for masks and overlays

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(f"{self.name}: {self.num_classes} classes but {len(self.class_names)} names "
                             f"and {len(self.palette)} palette colours")


@dataclass(frozen=True)
class Augment:
    """Training augmentation settings; crop_size None means whole images and no augmentation (validation)."""

    crop_size: tuple[int, int] | None = None
    scale_range: tuple[float, float] | None = (0.5, 2.0)
    flip: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"  # of the network input; mean and std are listed in this order


def label_table(mapping: dict[int, int], valid_ignored: Sequence[int] = ()) -> np.ndarray:
    """A 256-entry raw-id -> train-id table: `mapping` entries, `valid_ignored` ids -> 255, the rest INVALID."""
    table = np.full(256, INVALID, dtype=np.int64)
    table[list(valid_ignored)] = IGNORE_INDEX
    for raw, train in mapping.items():
        table[raw] = train
    return table


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file into HxWx3 uint8 RGB (grayscale photos, common in ADE20K, are converted)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise RDDError(f"cannot read image {path}: {str(exc).splitlines()[0]}") from None


def read_label(path: Path, table: np.ndarray, dataset: str) -> np.ndarray:
    """Decode a single-channel label PNG (palette PNGs give their indices) and map it through `table`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            raw = np.asarray(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise RDDError(f"cannot read label {path}: {str(exc).splitlines()[0]}") from None
    if raw.ndim != 2:
        raise RDDError(f"label {path} has shape {raw.shape}; labels must be single-channel class-id images")
    # bincount finds the values present in one pass; np.unique would sort a Cityscapes label's 2M pixels
    present = np.flatnonzero(np.bincount(raw.ravel(), minlength=256)) if raw.dtype == np.uint8 else np.unique(raw)
    bad = present[(present < 0) | (present > 255)]
    if bad.size == 0:
        bad = present[table[present] == INVALID]
    if bad.size:
        raise RDDError(f"label {path} contains value {int(bad[0])}, which is not a {dataset} label id")
    return np.take(table, raw)


class SegmentationDataset:
    """(image, label) pairs from files: `raw(i)` gives uint8 pixels and train ids, `ds[i]` the training tensors."""

    def __init__(self, info: DatasetInfo, pairs: list[tuple[Path, Path]], table: np.ndarray,
                 augment: Augment) -> None:
        self.info, self.pairs, self.table, self.augment = info, pairs, table, augment

    def __len__(self) -> int:
        return len(self.pairs)

    def image_path(self, index: int) -> Path | None:
        """The source image file of item `index`."""
        return self.pairs[index][0]

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB image, HxW int64 train-id label) with no augmentation."""
        image_path, label_path = self.pairs[index]
        image, label = read_rgb(image_path), read_label(label_path, self.table, self.info.name)
        if image.shape[:2] != label.shape:
            raise RDDError(f"image {image_path} is {image.shape[0]}x{image.shape[1]} but its label {label_path} "
                           f"is {label.shape[0]}x{label.shape[1]}")
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.raw(index)
        return to_tensors(image, label, self.augment)


def augment_pixels(image: np.ndarray, label: np.ndarray, augment: Augment) -> tuple[np.ndarray, np.ndarray]:
    """The training augmentation on uint8 pixels (scale, pad with the mean colour, crop, flip), no normalisation."""
    from rdd_deploy.data.transforms import train_transform

    pad_colour = tuple(augment.mean[c] for c in source_channels(augment.channel_order))  # the mean as RGB
    return train_transform(image, label, augment.crop_size, augment.scale_range, augment.flip, pad_colour)


def to_tensors(image: np.ndarray, label: np.ndarray, augment: Augment) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (when training) on uint8 pixels, then normalise with the runtime's one `normalize`."""
    import torch

    if augment.crop_size is not None:
        image, label = augment_pixels(image, label, augment)
    image = normalize(image, augment.mean, augment.std, augment.channel_order)
    # astype copies: a reader may cache its arrays (the synthetic set does), and a tensor must not alias them
    return torch.from_numpy(image), torch.from_numpy(label.astype(np.int64))


def list_pairs(images: Iterable[Path], label_of: Callable[[Path], Path], where: Path,
               limit: int | None) -> list[tuple[Path, Path]]:
    """Pair sorted images with their labels (`label_of(image)`), name any image without one, keep the first `limit`."""
    pairs = []
    for image in sorted(images):
        label = label_of(image)
        if not label.is_file():
            raise RDDError(f"image {image} has no label (expected {label})")
        pairs.append((image, label))
    if not pairs:
        raise RDDError(f"no images found in {where}")
    return pairs[:limit]


def require_dir(path: Path, what: str) -> Path:
    """Return `path` if it is a folder, else raise an error naming it."""
    if not path.is_dir():
        raise RDDError(f"{what} not found: {path}")
    return path
