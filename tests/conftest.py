"""Shared fixtures: tiny data set trees with the real folder layouts (data, training and export tests use them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data.trees import write_image, write_label


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` skip with one line where torch sees no CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    for split, city, names in (("train", "aachen", ["aachen_000000_000019", "aachen_000001_000019"]),
                               ("train", "bremen", ["bremen_000000_000019"]), ("val", "lindau", ["lindau_000000_000019"])):
        for i, name in enumerate(names):
            write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", seed=i)
            write_label(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", [7, 33, 0, 26, 200])
    return root


@pytest.fixture
def camvid_root(tmp_path: Path) -> Path:
    root = tmp_path / "CamVid"
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        for i in range(count):
            write_image(root / split / f"0001TP_{i:06d}.png", seed=i)
            write_label(root / f"{split}annot" / f"0001TP_{i:06d}.png", [0, 10, 11, 3])
    return root


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    ids = ["2007_000032", "2007_000039", "2008_000001"]
    for i, name in enumerate(ids):
        write_image(root / "JPEGImages" / f"{name}.jpg", seed=i)
        write_label(root / "SegmentationClassAug" / f"{name}.png", [0, 15, 255])
    for name in ids[:2]:
        write_label(root / "SegmentationClass" / f"{name}.png", [0, 20, 255, 1], palette=True)
    (sets / "train_aug.txt").write_text("\n".join(ids) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[:2]) + "\n")
    return root


@pytest.fixture
def ade20k_root(tmp_path: Path) -> Path:
    root = tmp_path / "ADEChallengeData2016"
    for split, count in (("training", 2), ("validation", 1)):
        for i in range(count):
            write_image(root / "images" / split / f"ADE_{split[:5]}_{i:08d}.jpg", seed=i)
            write_label(root / "annotations" / split / f"ADE_{split[:5]}_{i:08d}.png", [0, 1, 150])
    return root
