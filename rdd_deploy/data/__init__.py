"""Data sets by spec ("cityscapes:/data/cityscapes", "folder:/data/mine", "synthetic"): readers of the public
layouts, of a team's own data (folder: described by dataset.yaml or a CVAT export; coco: COCO annotations),
and a procedural set.

Every data set gives `ds[i]` -> (float32 [3,H,W] image, int64 [H,W] label with 255 ignored), `ds.raw(i)` ->
(uint8 HxWx3 image, label) without augmentation, `ds.image_path(i)` and `ds.info` (a DatasetInfo).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from rdd_deploy.data import ade20k, camvid, cityscapes, coco, folder, synthetic, voc
from rdd_deploy.data.base import Augment, DatasetInfo
from rdd_deploy.data.describe import SPLITS as OWN_SPLITS
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD


class Reader(NamedTuple):
    """One entry of DATASETS: the classes (None: read from the data set's own files), the splits, and the
    function that builds a split."""

    info: DatasetInfo | None
    splits: tuple[str, ...]
    build: Callable[..., Any]
    needs_path: bool


DATASETS: dict[str, Reader] = {
    "cityscapes": Reader(cityscapes.INFO, tuple(cityscapes.SPLITS), cityscapes.build, True),
    "camvid": Reader(camvid.INFO, tuple(camvid.SPLITS), camvid.build, True),
    "voc": Reader(voc.INFO, tuple(voc.SPLITS), voc.build, True),
    "ade20k": Reader(ade20k.INFO, tuple(ade20k.SPLITS), ade20k.build, True),
    "synthetic": Reader(synthetic.INFO, tuple(synthetic.SPLIT_CODES), synthetic.build, False),
    "folder": Reader(None, OWN_SPLITS, folder.build, True),
    "coco": Reader(None, OWN_SPLITS, coco.build, True),
}


def build_dataset(spec: str, split: str, crop_size: tuple[int, int] | None = None,
                  scale_range: tuple[float, float] | None = (0.5, 2.0), flip: bool = True,
                  mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                  max_images: int | None = None, channel_order: str = "RGB") -> Any:
    """Build split `split` of the data set `spec` ("name:/root" or "synthetic[:key=N,...]").

    With `crop_size` (training): random scale in `scale_range`, pad, random crop and random flip, all drawn
    from torch's global RNG. Without it (validation): whole images, no augmentation. `max_images` keeps the
    first N images in sorted order. mean, std and channel_order: the network's input convention.
    """
    name, _, argument = spec.partition(":")
    reader = DATASETS.get(name.strip().lower())
    if reader is None:
        raise RDDError(f"unknown data set '{name}' in '{spec}'; known: {', '.join(DATASETS)}")
    if split not in reader.splits:
        raise RDDError(f"{name} has no split '{split}'; use one of: {', '.join(reader.splits)}")
    if max_images is not None and max_images < 1:
        raise RDDError(f"max_images must be at least 1, got {max_images}")
    augment = Augment(tuple(crop_size) if crop_size is not None else None,
                      tuple(scale_range) if scale_range is not None else None, flip, tuple(mean), tuple(std),
                      channel_order)
    if not reader.needs_path:
        return reader.build(argument, split, augment, max_images)
    if not argument:
        raise RDDError(f"data set '{name}' needs a folder: use {name}:/path/to/{name}")
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise RDDError(f"{name} root folder not found: {root}")
    return reader.build(root, split, augment, max_images)


__all__ = ["DATASETS", "DatasetInfo", "Reader", "build_dataset"]
