"""Bad data: one RDDError whose message names the offending file or folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rdd_deploy.data import build_dataset
from rdd_deploy.errors import RDDError
from .trees import write_image, write_label


def raises(match: str | Path):
    """pytest.raises(RDDError) matching a literal path or message fragment."""
    return pytest.raises(RDDError, match=re.escape(str(match)))


def test_unknown_name_lists_known() -> None:
    with pytest.raises(RDDError, match="unknown data set 'kitti'.*cityscapes, camvid, voc, ade20k, synthetic"):
        build_dataset("kitti:/data", "train")


def test_missing_root_and_path(tmp_path: Path) -> None:
    with raises(tmp_path / "nope"):
        build_dataset(f"camvid:{tmp_path / 'nope'}", "train")
    with raises("needs a folder: use cityscapes:/path/to/cityscapes"):
        build_dataset("cityscapes", "train")


def test_unknown_split() -> None:
    with raises("cityscapes has no split 'test'; use one of: train, val"):
        build_dataset("cityscapes:/x", "test")


def test_missing_split_folder(camvid_root: Path, cityscapes_root: Path, ade20k_root: Path) -> None:
    (camvid_root / "testannot").rename(camvid_root / "labels")
    with raises(camvid_root / "testannot"):
        build_dataset(f"camvid:{camvid_root}", "test")
    with raises(cityscapes_root / "gtFine" / "val"):
        (cityscapes_root / "gtFine" / "val").rename(cityscapes_root / "gtFine" / "old")
        build_dataset(f"cityscapes:{cityscapes_root}", "val")
    with raises(ade20k_root / "images" / "validation"):
        (ade20k_root / "images" / "validation").rename(ade20k_root / "images" / "old")
        build_dataset(f"ade20k:{ade20k_root}", "val")


def test_missing_voc_list_file(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with raises(voc_root / "ImageSets" / "Segmentation" / "val.txt"):
        build_dataset(f"voc:{voc_root}", "val")


def test_voc_listed_image_missing(voc_root: Path) -> None:
    (voc_root / "JPEGImages" / "2007_000039.jpg").unlink()
    with raises(voc_root / "JPEGImages" / "2007_000039.jpg"):
        build_dataset(f"voc:{voc_root}", "val")


def test_image_without_label_is_named(cityscapes_root: Path) -> None:
    image = cityscapes_root / "leftImg8bit" / "train" / "bremen" / "bremen_000009_000019_leftImg8bit.png"
    write_image(image)
    with raises(f"image {image} has no label"):
        build_dataset(f"cityscapes:{cityscapes_root}", "train")


def test_empty_split(camvid_root: Path) -> None:
    for path in (camvid_root / "test").iterdir():
        path.unlink()
    with raises(f"no images found in {camvid_root / 'test'}"):
        build_dataset(f"camvid:{camvid_root}", "test")


@pytest.mark.parametrize(("name", "fixture", "label", "value"), [
    ("camvid", "camvid_root", "trainannot/0001TP_000000.png", 17),
    ("voc", "voc_root", "SegmentationClass/2007_000032.png", 40),
    ("ade20k", "ade20k_root", "annotations/validation/ADE_valid_00000000.png", 151),
])
def test_label_value_out_of_range(name: str, fixture: str, label: str, value: int,
                                  request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(fixture)
    write_label(root / label, [0, value], palette=name == "voc")
    ds = build_dataset(f"{name}:{root}", "train" if name == "camvid" else "val")
    with raises(f"label {root / label} contains value {value}, which is not a {name} label id"):
        ds.raw(0)


def test_cityscapes_high_label_id_is_ignored_not_an_error(cityscapes_root: Path) -> None:
    label = cityscapes_root / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png"
    write_label(label, [34, 255])
    assert set(build_dataset(f"cityscapes:{cityscapes_root}", "val").raw(0)[1].ravel()) == {255}


def test_corrupt_image_is_named(camvid_root: Path) -> None:
    image = camvid_root / "val" / "0001TP_000001.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = build_dataset(f"camvid:{camvid_root}", "val")
    with raises(f"cannot read image {image}"):
        ds.raw(1)


def test_truncated_image_is_named(ade20k_root: Path) -> None:
    image = ade20k_root / "images" / "training" / "ADE_train_00000001.jpg"
    image.write_bytes(image.read_bytes()[:200])
    with raises(f"cannot read image {image}"):
        build_dataset(f"ade20k:{ade20k_root}", "train").raw(1)


def test_label_size_mismatch(camvid_root: Path) -> None:
    from PIL import Image

    Image.new("L", (8, 8)).save(camvid_root / "valannot" / "0001TP_000000.png")
    with raises(f"image {camvid_root / 'val' / '0001TP_000000.png'} is 32x48 but its label"):
        build_dataset(f"camvid:{camvid_root}", "val").raw(0)


def test_rgb_label_is_refused(camvid_root: Path) -> None:
    label = camvid_root / "valannot" / "0001TP_000000.png"
    write_image(label)
    with raises(f"label {label} has shape (32, 48, 3)"):
        build_dataset(f"camvid:{camvid_root}", "val").raw(0)
