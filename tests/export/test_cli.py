"""`rdd-deploy export`: verification numbers in the output, one-line errors, atomic files, TensorRT missing."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from rdd_deploy.cli import app
from rdd_deploy.errors import RDDError
from rdd_deploy.export import verify

runner = CliRunner()


def percentages(output: str) -> list[float]:
    """The argmax agreements printed in the verification tables."""
    return [float(value) for value in re.findall(r"│\s+(\d+\.\d{4})%", output)]


def test_int8_export_calibrates_on_a_data_set_and_prints_its_numbers(trained: dict, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--checkpoint", str(trained["checkpoint"]), "--input-size", "64x64",
                                 "--precision", "int8", "--calib-data", "synthetic:size=64,train=16,val=4",
                                 "--calib-images", "16", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for header in ("argmax agreement", "max |Δlogit|", "mean |Δlogit|", "Export complete"):
        assert header in result.output
    fp32, int8 = percentages(result.output)
    assert fp32 >= 99.9 and int8 >= 97.0
    # 8 images: scikit-image's 4 photos and 4 held-out images of the calibration data set.
    assert re.findall(r"│\s+1x64x64\s+│\s+(\d+)\s+│", result.output) == ["8", "8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deeplabv3_r18_64x64.onnx", "deeplabv3_r18_64x64_int8.onnx"]
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "deeplabv3_r18_64x64_int8.onnx")).metadata_props}
    assert props["precision"] == "int8" and json.loads(props["calibration"]) == {"method": "minmax", "images": 16}


def test_dynamic_fp16_export_checks_a_second_shape(make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--checkpoint", str(make_checkpoint("deeplabv3_mbv2")), "--dynamic",
                                 "--precision", "fp16", "--batch", "2", "--out", str(tmp_path)])  # 64x64: crop size
    assert result.exit_code == 0, result.output
    shapes = re.findall(r"│\s+(\d+x\d+x\d+)\s+│", result.output)
    assert shapes == ["2x64x64", "3x36x36"] * 2  # fp32 then fp16
    assert min(percentages(result.output)) >= 99.0
    assert {p.name for p in tmp_path.iterdir()} == {"deeplabv3_mbv2_64x64_dyn.onnx",
                                                    "deeplabv3_mbv2_64x64_dyn_fp16.onnx"}


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_trt_without_tensorrt_names_the_install_and_still_writes_the_onnx(make_checkpoint: Callable[..., Path],
                                                                           tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--checkpoint", str(make_checkpoint("deeplabv3_mbv2")), "--trt",
                                 "--input-size", "64x64", "--out", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, RDDError)
    message = str(result.exception)
    assert "\n" not in message and "pip install 'rdd-deploy[trt]'" in message and "JetPack" in message
    assert [p.name for p in tmp_path.iterdir()] == ["deeplabv3_mbv2_64x64.onnx"]
    onnx.checker.check_model(str(tmp_path / "deeplabv3_mbv2_64x64.onnx"))


@pytest.fixture(scope="module")
def bad_checkpoints(make_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with random bytes named .pt and a checkpoint whose weights belong to another model."""
    import torch

    folder = tmp_path_factory.mktemp("bad")
    (folder / "corrupt.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    checkpoint = torch.load(make_checkpoint("deeplabv3_mbv2"), weights_only=True)
    checkpoint["model_spec"]["name"] = "deeplabv3_r18"
    torch.save(checkpoint, folder / "mismatched.pt")
    return folder


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--checkpoint", "{bad}/missing.pt"], "checkpoint not found"),
    (["--checkpoint", "{bad}/corrupt.pt"], "cannot read checkpoint"),
    (["--checkpoint", "{bad}/mismatched.pt"], "does not fit model 'deeplabv3_r18'"),
    (["--input-size", "30x30"], "input size 30x30 is not allowed"),
    (["--input-size", "65x64"], "multiples of 8"),
    (["--input-size", "big"], "--input-size must be HxW"),
    (["--precision", "fp8"], "unknown precision 'fp8'"),
    (["--precision", "int8"], "int8 needs calibration images"),
    (["--precision", "int8", "--calib-data", "synthetic", "--calib-method", "kl"], "unknown calibration method"),
    (["--precision", "int8", "--calib-data", "nowhere:/data"], "unknown data set 'nowhere'"),
    (["--batch", "0"], "--batch must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_1(arguments: list[str], expected: str, bad_checkpoints: Path,
                                          make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    arguments = [a.format(bad=bad_checkpoints) for a in arguments]
    if "--checkpoint" not in arguments:
        arguments += ["--checkpoint", str(make_checkpoint("deeplabv3_mbv2"))]
    result = runner.invoke(app, ["export", *arguments, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and isinstance(result.exception, RDDError), result.output
    assert expected in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_console_entry_point_prints_one_red_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", "from rdd_deploy.cli import run; run()", "export",
                             "--checkpoint", str(tmp_path / "missing.pt")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'missing.pt'}"]


def test_failed_verification_writes_nothing_and_keeps_the_good_file(make_checkpoint: Callable[..., Path],
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    command = ["export", "--checkpoint", str(make_checkpoint("deeplabv3_mbv2")), "--input-size", "64x64",
               "--precision", "fp16", "--out", str(tmp_path)]
    assert runner.invoke(app, command).exit_code == 0
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(good) == {"deeplabv3_mbv2_64x64.onnx", "deeplabv3_mbv2_64x64_fp16.onnx"}

    monkeypatch.setitem(verify.MIN_AGREEMENT, "fp32", 1.01)  # no export can reach it
    result = runner.invoke(app, command)
    assert result.exit_code == 1 and "below the 101.0% required for fp32; file not written" in str(result.exception)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good  # nothing replaced, no temporary left

    fresh = tmp_path / "fresh"
    monkeypatch.setitem(verify.MIN_AGREEMENT, "fp32", 0.999)
    monkeypatch.setitem(verify.MIN_AGREEMENT, "fp16", 1.01)
    result = runner.invoke(app, command[:-1] + [str(fresh)])
    assert result.exit_code == 1 and "required for fp16" in str(result.exception)
    assert [p.name for p in fresh.iterdir()] == ["deeplabv3_mbv2_64x64.onnx"]  # the verified FP32 file stays


def test_interrupted_write_leaves_no_file(make_checkpoint: Callable[..., Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def half_written(model: onnx.ModelProto, path: str) -> None:
        Path(path).write_bytes(model.SerializeToString()[:1000])
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save", half_written)
    result = runner.invoke(app, ["export", "--checkpoint", str(make_checkpoint("deeplabv3_mbv2")),
                                 "--input-size", "64x64", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []
