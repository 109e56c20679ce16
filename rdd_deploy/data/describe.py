"""The description of a user's own data set: its `dataset.yaml`, or the `labelmap.txt` of a CVAT export.

Validated here with plain Python rather than the recipes' pydantic models: `validate` and `parity` read data
sets in the runtime-only install, which leaves pydantic out. The checks are the same kind (unknown fields
are errors, each message names the file and the field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rdd_deploy.data.base import IGNORE_INDEX, DatasetInfo
from rdd_deploy.data.masks import MaskCodec
from rdd_deploy.errors import RDDError

DESCRIPTION = "dataset.yaml"
SPLITS = ("train", "val", "test")
FIELDS = ("names", "palette", "ignore_index", "reduce_zero_label", "images", "masks", "splits")


@dataclass(frozen=True)
class Description:
    """Classes, mask encoding and file layout of one folder data set."""

    root: Path
    info: DatasetInfo
    codec: MaskCodec
    images: Path  # images/<split>/ (or images/ itself with list files)
    masks: Path
    list_files: dict[str, Path] = field(default_factory=dict)  # split -> list file; empty: split folders


def default_palette(count: int) -> list[tuple[int, int, int]]:
    """Black for class 0, then ADE20K's distinct golden-ratio hues."""
    from rdd_deploy.data.ade20k import golden_palette

    return [(0, 0, 0)] + golden_palette(count)[1:]


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, dict):  # Ultralytics' form {0: name, 1: name}
        if sorted(value) != list(range(len(value))):
            raise RDDError(f"{where}: field 'names' as a mapping needs the keys 0..{len(value) - 1}")
        value = [value[i] for i in range(len(value))]
    if not isinstance(value, list) or not value or not all(isinstance(n, str) and n.strip() for n in value):
        raise RDDError(f"{where}: field 'names' must be a non-empty list of class names")
    if len(set(value)) != len(value):
        duplicate = next(n for n in value if value.count(n) > 1)
        raise RDDError(f"{where}: field 'names' lists '{duplicate}' twice")
    return tuple(value)


def _palette(value: Any, count: int, where: str) -> list[tuple[int, int, int]]:
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                       for c in value)):
        raise RDDError(f"{where}: field 'palette' needs one [r, g, b] (0-255) per class ({count})")
    colours = [tuple(c) for c in value]
    if len(set(colours)) != count:
        duplicate = next(c for c in colours if colours.count(c) > 1)
        raise RDDError(f"{where}: field 'palette' gives two classes the colour {list(duplicate)}")
    return colours


def _integer(value: Any, name: str, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RDDError(f"{where}: field '{name}' must be an integer from {low} to {high}, got {value!r}")
    return value


def read_yaml(root: Path) -> Description:
    """Validate `root/dataset.yaml` into a Description; an error names the file and the field."""
    where = root / DESCRIPTION
    try:
        spec = yaml.safe_load(where.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RDDError(f"cannot read {where}: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise RDDError(f"{where}: expected a mapping of fields ({', '.join(FIELDS)})")
    unknown = next((key for key in spec if key not in FIELDS), None)
    if unknown is not None:
        raise RDDError(f"{where}: unknown field '{unknown}'; fields: {', '.join(FIELDS)}")
    if "names" not in spec:
        raise RDDError(f"{where}: field 'names' is required (the class names, in mask-value order)")
    names = _names(spec["names"], where)
    reduce_zero_label = spec.get("reduce_zero_label", False)
    if not isinstance(reduce_zero_label, bool):
        raise RDDError(f"{where}: field 'reduce_zero_label' must be true or false")
    shift = int(reduce_zero_label)
    if len(names) + shift > IGNORE_INDEX:
        raise RDDError(f"{where}: field 'names' lists {len(names)} classes; 8-bit masks hold at most "
                       f"{IGNORE_INDEX - shift}")
    ignore = _integer(spec.get("ignore_index", IGNORE_INDEX), "ignore_index", len(names) + shift, 255, where)
    palette = _palette(spec["palette"], len(names), where) if "palette" in spec else None
    folders = {}
    for key in ("images", "masks"):
        value = spec.get(key, key)
        if not isinstance(value, str) or not value:
            raise RDDError(f"{where}: field '{key}' must be a folder path relative to {root}")
        folders[key] = root / value
    splits = spec.get("splits", {})
    if not isinstance(splits, dict) or not all(isinstance(v, str) for v in splits.values()):
        raise RDDError(f"{where}: field 'splits' must map split names to list files, e.g. train: train.txt")
    bad_split = next((s for s in splits if s not in SPLITS), None)
    if bad_split is not None:
        raise RDDError(f"{where}: field 'splits' has unknown split '{bad_split}'; use {', '.join(SPLITS)}")
    info = DatasetInfo(root.name, len(names), names, palette=palette or default_palette(len(names)))
    codec = MaskCodec(len(names), tuple(palette or ()), ignore, reduce_zero_label)
    return Description(root, info, codec, folders["images"], folders["masks"],
                       {split: root / path for split, path in splits.items()})


# CVAT names its subsets freely; these are the names its task dialog offers and the common spellings.
CVAT_SUBSETS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def read_cvat(root: Path) -> Description:
    """A CVAT "Segmentation mask 1.1" export: labelmap.txt, SegmentationClass/, ImageSets/Segmentation/, JPEGImages/."""
    where = root / "labelmap.txt"
    names, palette = [], []
    for number, line in enumerate(where.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        try:
            colour = tuple(int(v) for v in rest.split(":")[0].split(","))
        except ValueError:
            colour = ()
        if not name or len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
            raise RDDError(f"{where} line {number}: expected name:r,g,b::, got '{line}'")
        names.append(name)
        palette.append(colour)
    palette_list = _palette([list(c) for c in palette], len(palette), where)
    names_tuple = _names(names, where)
    lists = root / "ImageSets" / "Segmentation"
    present = {path.stem.lower(): path for path in lists.glob("*.txt")} if lists.is_dir() else {}
    list_files = {}
    for split, spellings in CVAT_SUBSETS.items():
        found = next((s for s in spellings if s in present), None)
        if found is not None:
            list_files[split] = present[found]
    if not list_files:
        raise RDDError(f"CVAT export {root} has no train/val subset lists in {lists} (found: "
                       f"{', '.join(sorted(present)) or 'none'}); assign the Train and Validation subsets in CVAT, "
                       f"or add a {DESCRIPTION} with list files")
    info = DatasetInfo(root.name, len(names_tuple), names_tuple, palette=palette_list)
    return Description(root, info, MaskCodec(len(names_tuple), tuple(palette_list)), root / "JPEGImages",
                       root / "SegmentationClass", list_files)


def describe(root: Path) -> Description:
    """`root/dataset.yaml` when it exists, else a CVAT export's labelmap.txt, else an error naming both."""
    if (root / DESCRIPTION).is_file():
        return read_yaml(root)
    if (root / "labelmap.txt").is_file():
        return read_cvat(root)
    raise RDDError(f"folder data set {root} has no {DESCRIPTION} (nor a CVAT export's labelmap.txt); "
                   "write one with at least `names: [background, ...]`")
