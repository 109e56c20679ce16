"""`rdd-deploy check-data`: every planted fault one line naming its file, exit 1; a clean set nothing, exit 0."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rdd_deploy.cli import app
from rdd_deploy.data.synthetic import NAMES, PALETTE
from .own_data import write_coco, write_folder

runner = CliRunner()
CLASSES = 5


@pytest.fixture
def five_classes(tmp_path: Path) -> Path:
    """A clean 5-class folder set (synthetic labels folded into 0..4) whose palette also reads colour masks."""
    root = write_folder(tmp_path / "set", names=list(NAMES[:CLASSES]), palette=[list(c) for c in PALETTE[:CLASSES]])
    for mask in root.glob("masks/*/*.png"):
        Image.fromarray(np.asarray(Image.open(mask)) % CLASSES).save(mask)
    return root


def problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem: ")]


def test_clean_set_reports_nothing_and_writes_statistics(five_classes: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["check-data", f"folder:{five_classes}", "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert problems(result.output) == [] and "no problems found" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["problems"] == [] and report["splits"]["train"]["images"] == 4
    assert report["splits"]["val"]["sizes"] == {"32x32": 2} and report["splits"]["val"]["ignored_share"] == 0.0
    labels = np.stack([np.asarray(Image.open(m)) for m in sorted(five_classes.glob("masks/train/*.png"))])
    shares = [row["train_share"] for row in report["classes"]]
    assert shares == pytest.approx(np.bincount(labels.ravel(), minlength=CLASSES) / labels.size)
    assert [row["train_images"] for row in report["classes"]] == [
        int(sum((label == c).any() for label in labels)) for c in range(CLASSES)]
    assert all(row["rare"] for row in report["classes"])  # 4 training images: below the 5-image flag


def test_every_planted_fault_is_one_line(five_classes: Path) -> None:
    root = five_classes
    images, masks = root / "images", root / "masks"
    truncated = images / "train" / "train_000.jpg"
    Image.open(images / "train" / "train_000.png").save(truncated)
    (images / "train" / "train_000.png").unlink()
    truncated.write_bytes(truncated.read_bytes()[:300])
    Image.new("L", (16, 16)).save(masks / "train" / "train_001.png")  # another size
    seven = np.asarray(Image.open(masks / "train" / "train_002.png")).copy()
    seven[:3, :3] = 7
    Image.fromarray(seven).save(masks / "train" / "train_002.png")
    colour = np.asarray(PALETTE, dtype=np.uint8)[np.asarray(Image.open(masks / "train" / "train_003.png"))]
    colour[0, 0] = (1, 2, 3)
    Image.fromarray(colour).save(masks / "train" / "train_003.png")
    Image.open(masks / "val" / "val_000.png").save(masks / "val" / "val_000.jpg")
    (masks / "val" / "val_000.png").unlink()
    (masks / "val" / "val_001.png").unlink()
    shutil.copy(images / "train" / "train_003.png", images / "val" / "copy.png")
    shutil.copy(masks / "train" / "train_002.png", masks / "val" / "copy.png")

    result = runner.invoke(app, ["check-data", f"folder:{root}"])
    assert result.exit_code == 1
    found = problems(result.output)
    expected = [f"cannot read image {truncated}",
                f"is 32x32 but its label {masks / 'train' / 'train_001.png'} is 16x16",
                f"value 7 is no class of the data set (5 classes): 18 pixels in 2 masks, e.g. "
                f"{masks / 'train' / 'train_002.png'}",
                f"colour (1, 2, 3) is no class of the data set (5 classes): 1 pixel in 1 mask, e.g. "
                f"{masks / 'train' / 'train_003.png'}",
                f"mask {masks / 'val' / 'val_000.jpg'} is a JPEG",
                f"image {images / 'val' / 'val_001.png'} has no mask",
                f"image {images / 'val' / 'copy.png'} (val) has the same pixels as "
                f"{images / 'train' / 'train_003.png'}"]
    assert len(found) == len(expected), "\n".join(found)
    for fragment in expected:
        assert sum(fragment in line for line in found) == 1, (fragment, found)


def test_empty_split_and_coco_export(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco", "rle")
    result = runner.invoke(app, ["check-data", f"coco:{root}"])
    assert result.exit_code == 0 and problems(result.output) == [], result.output
    empty = write_folder(tmp_path / "set")
    for image in (empty / "images" / "val").iterdir():
        image.unlink()
    result = runner.invoke(app, ["check-data", f"folder:{empty}"])
    assert result.exit_code == 1 and problems(result.output) == [
        f"problem: split 'val' is empty: no images in {empty / 'images' / 'val'}"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set")
    (root / "dataset.yaml").write_text("palette: [[0, 0, 0]]\n")
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-c", "from rdd_deploy.cli import run; run()", "check-data",
                             f"folder:{root}", "--json", str(report)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and not report.exists()
    assert result.stderr.strip() == f"error: {root / 'dataset.yaml'}: field 'names' is required (the class names, " \
                                    "in mask-value order)"
