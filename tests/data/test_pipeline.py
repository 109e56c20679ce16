"""A folder data set through the whole pipeline with the configs/custom recipes: train-teacher, distill, export,
validate, predict; its class names and palette reach the checkpoint, the ONNX metadata and the masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rdd_deploy.checkpoint import load_checkpoint
from rdd_deploy.cli import app
from rdd_deploy.data.synthetic import NAMES, PALETTE
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime import Segmenter
from .own_data import write_coco, write_folder

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
# The shipped recipes, shrunk: 32x32 crops, two iterations of batch 2, no ImageNet file, no DataLoader workers.
TINY = ["--iters", "2", "--batch-size", "2", "--set", "model.pretrained=null", "--set", "data.crop_size=[32, 32]",
        "--set", "data.workers=0", "--set", "eval.every=2", "--set", "model.head_channels=16"]


@pytest.mark.slow
def test_folder_set_trains_distils_exports_and_validates(tmp_path: Path) -> None:
    data = f"folder:{write_folder(tmp_path / 'my_set', colour=True)}"
    result = runner.invoke(app, ["train-teacher", str(ROOT / "configs/custom/deeplabv3_r101_teacher.yaml"),
                                 "--data", data, "--out", str(tmp_path / "teacher"), *TINY])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["distill", str(ROOT / "configs/custom/deeplabv3_r18_rdd.yaml"), "--data", data,
                                 "--teacher", str(tmp_path / "teacher" / "best.pt"), "--out",
                                 str(tmp_path / "student"), *TINY])
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(tmp_path / "student" / "best.pt")["meta"]
    assert tuple(meta["class_names"]) == NAMES and [tuple(c) for c in meta["palette"]] == PALETTE

    # the same validation images as a COCO export score the same (DataLoader workers read the COCO set)
    scores = []
    for spec, workers in ((data, "0"), (f"coco:{write_coco(tmp_path / 'my_coco', 'polygons')}", "2")):
        out = tmp_path / f"evaluate_{workers}.json"
        result = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "student" / "best.pt"), "--data",
                                     spec, "--workers", workers, "--device", "cpu", "--json", str(out)])
        assert result.exit_code == 0, result.output
        scores.append(json.loads(out.read_text()))
    assert scores[0]["miou"] == scores[1]["miou"] and list(scores[1]["iou"]) == list(NAMES)

    result = runner.invoke(app, ["export", "--checkpoint", str(tmp_path / "student" / "best.pt"), "--input-size",
                                 "32x32", "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    onnx = tmp_path / "export" / "deeplabv3_r18_32x32.onnx"
    info = Segmenter.from_file(onnx).info
    assert info.class_names == NAMES and info.palette == tuple(PALETTE)

    result = runner.invoke(app, ["validate", str(onnx), "--data", data, "--json", str(tmp_path / "val.json")])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "val.json").read_text())
    assert scores["images"] == 2 and list(scores["iou"]) == list(NAMES) and 0.0 <= scores["miou"] <= 1.0

    photo = tmp_path / "my_set" / "images" / "val" / "val_000.png"
    result = runner.invoke(app, ["predict", str(onnx), str(photo), "--out", str(tmp_path / "masks")])
    assert result.exit_code == 0, result.output
    mask = Image.open(tmp_path / "masks" / "val_000.png")
    assert mask.getpalette()[:3 * len(PALETTE)] == [v for colour in PALETTE for v in colour]
    assert np.array_equal(np.asarray(mask), Segmenter.from_file(onnx).predict(np.asarray(Image.open(photo))))


@pytest.mark.parametrize(("change", "message"), [
    ("names", "field 'names' is required"),
    ("split", "has no split 'val' (no folder"),
])
def test_bad_data_stops_training_before_anything_is_written(change: str, message: str, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "my_set")
    if change == "names":
        (root / "dataset.yaml").write_text("reduce_zero_label: false\n")
    else:
        (root / "images" / "val").rename(root / "images" / "valid")
    out = tmp_path / "teacher"
    result = runner.invoke(app, ["train-teacher", str(ROOT / "configs/custom/deeplabv3_r101_teacher.yaml"),
                                 "--data", f"folder:{root}", "--out", str(out), *TINY])
    # run() prints an RDDError as one red line and exits 1 (tests/data/test_check.py runs it in a subprocess)
    assert result.exit_code == 1 and isinstance(result.exception, RDDError) and not out.exists()
    assert message in str(result.exception) and "\n" not in str(result.exception)
