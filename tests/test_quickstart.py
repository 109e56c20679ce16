"""The quickstart pipeline end to end, with its iteration counts scaled down to a few steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from rdd_deploy.checkpoint import model_from_checkpoint
from rdd_deploy.cli import app
from rdd_deploy.runtime import Segmenter


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One scaled-down quickstart, shared by the tests of this module, without the [dev] extras."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "skimage", None)  # README command (1) installs no scikit-image
        result = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--scale", "0.01"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_quickstart_trains_exports_checks_and_times(quickstart_run: tuple[Path, str]) -> None:
    out, output = quickstart_run
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
    assert "val mIoU %" in output and "speed-up" in output


def test_prediction_figure_is_drawn_from_a_quickstart_run(quickstart_run: tuple[Path, str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "figures.py"), "--quickstart",
                             str(quickstart_run[0]), "--images", "2", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "predictions.png") as figure:
        width, height = figure.size
    assert width > 2 * height  # two rows of six panels: image, label, teacher, CE, KD, RDD
