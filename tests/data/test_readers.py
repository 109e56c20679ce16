"""The four real-layout readers on tiny trees: pairing, id mapping, tensors and raw pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rdd_deploy.data import DATASETS, build_dataset
from rdd_deploy.runtime.preprocess import normalize
from .trees import H, W, write_image


def rows(label: np.ndarray) -> list[int]:
    """The first value of each distinct row pattern (the fixtures write one value per row)."""
    return [int(v) for v in dict.fromkeys(label[:, 0].tolist())]


def test_cityscapes_pairs_and_maps_label_ids(cityscapes_root: Path) -> None:
    ds = build_dataset(f"cityscapes:{cityscapes_root}", "train")
    assert len(ds) == 3 and ds.info.num_classes == 19 and ds.info.class_names[0] == "road"
    assert [p.name for p in map(ds.image_path, range(3))] == [
        "aachen_000000_000019_leftImg8bit.png", "aachen_000001_000019_leftImg8bit.png",
        "bremen_000000_000019_leftImg8bit.png"]
    image, label = ds.raw(0)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8 and label.shape == (H, W)
    assert rows(label) == [0, 18, 255, 13]  # labelIds 7, 33, 0, 26 (car); 200 -> ignored as well
    assert len(build_dataset(f"cityscapes:{cityscapes_root}", "val")) == 1


def test_tensors_are_normalize_of_raw(cityscapes_root: Path) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ds = build_dataset(f"cityscapes:{cityscapes_root}", "val", mean=mean, std=std)
    image, label = ds[0]
    raw_image, raw_label = ds.raw(0)
    assert image.dtype == torch.float32 and image.shape == (3, H, W) and label.dtype == torch.int64
    assert torch.equal(image, torch.from_numpy(normalize(raw_image, mean, std)))
    assert np.array_equal(label.numpy(), raw_label)
    assert np.array_equal(raw_image, np.asarray(Image.open(ds.image_path(0))))


def test_camvid_splits_and_unlabelled(camvid_root: Path) -> None:
    sizes = {split: len(build_dataset(f"camvid:{camvid_root}", split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 2, "test": 1}
    ds = build_dataset(f"camvid:{camvid_root}", "train")
    assert ds.info.num_classes == 11 and len(ds.info.palette) == 11
    assert rows(ds.raw(1)[1]) == [0, 10, 255, 3]


def test_voc_train_aug_and_palette_val(voc_root: Path) -> None:
    train = build_dataset(f"voc:{voc_root}", "train")
    assert len(train) == 3 and train.pairs[0][1].parent.name == "SegmentationClassAug"
    assert rows(train.raw(2)[1]) == [0, 15, 255]
    val = build_dataset(f"voc:{voc_root}", "val")
    assert len(val) == 2 and val.pairs[0][1].parent.name == "SegmentationClass"
    assert rows(val.raw(0)[1]) == [0, 20, 255, 1]  # palette indices, not colours
    assert val.info.palette[15] == (192, 128, 128)  # person, VOCdevkit's colour map


def test_voc_list_file_at_root(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Segmentation" / "train_aug.txt").rename(voc_root / "train_aug.txt")
    assert len(build_dataset(f"voc:{voc_root}", "train")) == 3


def test_ade20k_shift_and_parent_root(ade20k_root: Path) -> None:
    for root in (ade20k_root, ade20k_root.parent):
        ds = build_dataset(f"ade20k:{root}", "train")
        assert len(ds) == 2 and ds.info.num_classes == 150 and ds.info.class_names[:2] == ("wall", "building")
    assert rows(ds.raw(0)[1]) == [255, 0, 149]
    assert len(build_dataset(f"ade20k:{ade20k_root}", "val")) == 1


def test_max_images_keeps_first_in_sorted_order(camvid_root: Path) -> None:
    ds = build_dataset(f"camvid:{camvid_root}", "train", max_images=2)
    assert [ds.image_path(i).name for i in range(len(ds))] == ["0001TP_000000.png", "0001TP_000001.png"]


def test_grayscale_photo_is_converted(camvid_root: Path) -> None:

    write_image(camvid_root / "val" / "0001TP_000000.png", mode="L")
    image, _ = build_dataset(f"camvid:{camvid_root}", "val").raw(0)
    assert image.shape == (H, W, 3) and np.array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("name", sorted(name for name, reader in DATASETS.items() if reader.info is not None))
def test_info_is_complete(name: str) -> None:
    info = DATASETS[name].info
    assert len(info.class_names) == len(info.palette) == info.num_classes and info.ignore_index == 255
    assert len(set(info.class_names)) == info.num_classes
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in info.palette)
