"""The edge runtime must import and run with PyTorch made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rdd_deploy.runtime.tensorrt_engine import TENSORRT_MISSING

SCRIPT = """
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np
import rdd_deploy.runtime
from rdd_deploy.runtime import Segmenter, SegmentationMetric
from rdd_deploy.runtime.masks import mask_image, palette_of
import rdd_deploy.runtime.evaluate, rdd_deploy.runtime.tables, rdd_deploy.runtime.tensorrt_engine
import rdd_deploy.runtime.openvino_engine
import rdd_deploy.data.folder, rdd_deploy.data.coco, rdd_deploy.data.check, rdd_deploy.cli.data  # own data sets
import rdd_deploy.runtime.report, rdd_deploy.runtime.confusion, rdd_deploy.cli.report  # release report

segmenter = Segmenter.from_file(sys.argv[1], sys.argv[2])
image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
mask = segmenter.predict(image)
metric = SegmentationMetric(segmenter.info.num_classes)
metric.update(mask, mask)
mask_image(mask, palette_of(segmenter.info))
assert sys.modules["torch"] is None
print(mask.shape, metric.compute()["pixel_acc"])
"""


def test_runtime_runs_without_torch(dynamic_onnx: Path, backend: str) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(dynamic_onnx), backend], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(48, 80) 1.0"


ENGINE_SCRIPT = """
import sys
sys.modules["torch"] = None
if sys.argv[1] == "doubles":  # strict TensorRT 11.1 and cuda-python doubles stand in for the GPU install
    import types, trt_doubles
    trt_doubles.install(types.SimpleNamespace(setitem=dict.__setitem__), trt_doubles.World("11.1.0.106"))
else:
    sys.modules["tensorrt"] = None  # an install without TensorRT, even where one exists
from rdd_deploy.cli import run
sys.argv = ["rdd-deploy", "engine", *sys.argv[2:]]
try:
    run()
finally:
    assert sys.modules["torch"] is None
"""


def run_engine(mode: str, *args: str) -> subprocess.CompletedProcess:
    tests = str(Path(__file__).resolve().parents[1])
    return subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, mode, *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])})


def test_engine_command_without_torch_stops_at_tensorrt_in_one_line(dynamic_onnx: Path, tmp_path: Path) -> None:
    result = run_engine("no-tensorrt", str(dynamic_onnx), "--out", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {TENSORRT_MISSING}"]
    assert list(tmp_path.iterdir()) == []


def test_engine_command_without_torch_builds_verifies_and_writes_the_sidecar(dynamic_onnx: Path, tmp_path: Path,
                                                                             photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "photo.png")
    result = run_engine("doubles", str(dynamic_onnx), "--out", str(tmp_path / "out"), "--data",
                        str(tmp_path / "photo.png"), "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert "vs ONNX Runtime on dynamic.onnx" in result.stderr and "Engine complete" in result.stderr
    sidecar = json.loads((tmp_path / "out" / "tiny_64x64_dyn.engine.json").read_text())
    assert sidecar["tensorrt_version"] == "11.1.0.106" and sidecar["build"]["source_onnx"] == "dynamic.onnx"
    assert sidecar["profiles"][0]["max"] == [2, 3, 64, 64]
