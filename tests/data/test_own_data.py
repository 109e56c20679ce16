"""A team's own data in every form (index PNGs, colour PNGs, CVAT, COCO polygons and RLE) reads as the same labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from rdd_deploy.data import build_dataset
from rdd_deploy.data.synthetic import NAMES, PALETTE
from rdd_deploy.errors import RDDError
from .own_data import SPLITS, samples, write_coco, write_cvat, write_folder

FORMS = {
    "index": lambda root: f"folder:{write_folder(root)}",
    "colour": lambda root: f"folder:{write_folder(root, colour=True)}",
    "cvat": lambda root: f"folder:{write_cvat(root)}",
    "coco-polygons": lambda root: f"coco:{write_coco(root, 'polygons')}",
    "coco-rle": lambda root: f"coco:{write_coco(root, 'rle', layout='coco')}",
}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_reads_the_renderer_s_labels(form: str, tmp_path: Path) -> None:
    spec = FORMS[form](tmp_path / form)
    for split in SPLITS:
        dataset = build_dataset(spec, split)
        assert dataset.info.class_names == NAMES and len(dataset) == SPLITS[split]
        for index, (stem, image, label) in enumerate(samples(split)):
            raw_image, raw_label = dataset.raw(index)
            assert dataset.image_path(index).stem == stem
            assert np.array_equal(raw_image, image) and np.array_equal(raw_label, label)
    if form in ("colour", "cvat"):
        assert dataset.info.palette == PALETTE


def test_reduce_zero_label_and_ignore_value(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set", names=list(NAMES[1:]), reduce_zero_label=True, ignore_index=250)
    mask = root / "masks" / "val" / "val_000.png"
    stored = np.asarray(Image.open(mask)).copy()
    stored[0, :4] = 250
    Image.fromarray(stored).save(mask)
    label = build_dataset(f"folder:{root}", "val").raw(0)[1]
    expected = np.where(stored == 0, 255, stored.astype(np.int64) - 1)
    expected[stored == 250] = 255
    assert np.array_equal(label, expected)


def test_list_files_and_palette_masks(tmp_path: Path) -> None:
    root = tmp_path / "listed"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stems = []
    for stem, image, label in samples("val"):
        Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=100)
        indexed = Image.fromarray(label.astype(np.uint8)).convert("P")
        indexed.putpalette([(v * 53) % 256 for v in range(768)])  # colours unrelated to the classes
        indexed.save(root / "masks" / f"{stem}.png")
        stems.append(stem)
    (root / "val.txt").write_text("\n".join(stems) + "\n")
    (root / "train.txt").write_text(f"images/{stems[0]}.jpg masks/{stems[0]}.png\n")
    (root / "dataset.yaml").write_text(yaml.safe_dump({"names": dict(enumerate(NAMES)),
                                                       "splits": {"train": "train.txt", "val": "val.txt"}}))
    val = build_dataset(f"folder:{root}", "val")
    assert [p.name for p in map(val.image_path, range(len(val)))] == [f"{s}.jpg" for s in stems]
    assert np.array_equal(val.raw(1)[1], samples("val")[1][2])
    assert len(build_dataset(f"folder:{root}", "train")) == 1


def test_subfolders_pair_by_relative_stem(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set")
    for folder in ("images", "masks"):
        (root / folder / "val" / "site_b").mkdir()
        (root / folder / "val" / "val_001.png").rename(root / folder / "val" / "site_b" / "val_001.png")
    dataset = build_dataset(f"folder:{root}", "val")
    assert [p.relative_to(root).as_posix() for p, _ in dataset.pairs] == ["images/val/site_b/val_001.png",
                                                                          "images/val/val_000.png"]
    assert np.array_equal(dataset.raw(0)[1], samples("val")[1][2])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("names", None, "field 'names' is required"),
    ("names", ["a", "a"], "field 'names' lists 'a' twice"),
    ("palette", [[0, 0, 0]], "field 'palette' needs one [r, g, b] (0-255) per class (8)"),
    ("ignore_index", 3, "field 'ignore_index' must be an integer from 8 to 255, got 3"),
    ("splits", {"training": "t.txt"}, "field 'splits' has unknown split 'training'"),
    ("colours", [], "unknown field 'colours'"),
])
def test_bad_dataset_yaml_names_the_field(field: str, value: object, message: str, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set")
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    if value is None:
        del spec[field]
    else:
        spec[field] = value
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(RDDError, match=f"{root / 'dataset.yaml'}: .*{message}".replace("[", r"\[").replace(
            "(", r"\(").replace(")", r"\)")):
        build_dataset(f"folder:{root}", "train")


def test_unknown_split_and_missing_description(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set")
    with pytest.raises(RDDError, match=r"has no split 'test' \(no folder .*\); it has: train, val"):
        build_dataset(f"folder:{root}", "test")
    (root / "dataset.yaml").unlink()
    with pytest.raises(RDDError, match="has no dataset.yaml"):
        build_dataset(f"folder:{root}", "train")


def test_coco_category_without_class_and_missing_split(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco", "polygons")
    annotations = root / "train" / "_annotations.coco.json"
    spec = json.loads(annotations.read_text())
    spec["annotations"][0]["category_id"] = 42
    annotations.write_text(json.dumps(spec))
    with pytest.raises(RDDError, match=f"{annotations}: annotation 1 has category_id 42, which no category"):
        build_dataset(f"coco:{root}", "train")
    with pytest.raises(RDDError, match="has no split 'test'; it has: train, val"):
        build_dataset(f"coco:{root}", "test")


def test_coco_overlap_rule_and_crowd(tmp_path: Path) -> None:
    """Larger objects first (the smaller one on top stays visible), crowd regions ignored last."""
    root = tmp_path / "coco"
    (root / "train").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "train" / "a.png")
    box = lambda x0, y0, x1, y1: [[x0, y0, x1, y0, x1, y1, x0, y1]]  # noqa: E731
    spec = {"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
            "categories": [{"id": 1, "name": "small"}, {"id": 2, "name": "big"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": box(2, 2, 4, 4)},
                            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": box(0, 0, 6, 6)},
                            {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 1, "segmentation": box(6, 6, 8, 8)}]}
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(spec))
    label = build_dataset(f"coco:{root}", "train").raw(0)[1]
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[:6, :6], expected[2:4, 2:4], expected[6:, 6:] = 2, 1, 255
    assert np.array_equal(label, expected)
