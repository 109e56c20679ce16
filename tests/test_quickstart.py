"""The quickstart pipeline end to end, with its iteration counts scaled down to a few steps."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rdd_deploy.checkpoint import model_from_checkpoint
from rdd_deploy.cli import app
from rdd_deploy.runtime import Segmenter


def test_quickstart_trains_exports_checks_and_times(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--scale", "0.01"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [run["run"] for run in summary["runs"]] == ["teacher", "student_ce", "student_kd", "student_rdd"]
    for run in summary["runs"]:
        model, meta = model_from_checkpoint(run["checkpoint"])
        assert meta["miou"] == run["miou"] and 0.0 <= run["miou"] <= 1.0
    teacher, students = summary["runs"][0], summary["runs"][1:]
    assert teacher["params_m"] > 3 * students[0]["params_m"]
    assert summary["best_student"] == max(students, key=lambda run: run["miou"])["run"]
    onnx = Segmenter.from_file(summary["onnx"])
    assert onnx.info.num_classes == 8 and onnx.info.torch_miou is not None
    assert summary["parity"]["agreement"] >= 99.9 and summary["parity"]["images"] == 64
    assert {"pytorch", "onnxruntime"} == set(summary["latency"])
    assert all(summary["latency"][k]["end_to_end"]["mean_ms"] > 0 for k in summary["latency"])
    assert "val mIoU %" in result.output and "speed-up" in result.output
