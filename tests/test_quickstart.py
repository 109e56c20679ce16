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
from rdd_deploy.quickstart import summary_tables
from rdd_deploy.runtime import Segmenter
from runtime.helpers import assert_no_cell_cut, render_without_terminal


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
    assert teacher["params_m"] > 2 * students[0]["params_m"]
    assert summary["best_student"] == max(students, key=lambda run: run["miou"])["run"]
    onnx = Segmenter.from_file(summary["onnx"])
    assert onnx.info.num_classes == 8 and onnx.info.torch_miou is not None
    assert summary["parity"]["agreement"] >= 99.9 and summary["parity"]["images"] == 64
    assert {"pytorch", "onnxruntime"} == set(summary["latency"])
    assert all(summary["latency"][k]["end_to_end"]["mean_ms"] > 0 for k in summary["latency"])
    assert "val mIoU %" in output and "speed-up" in output
    report = json.loads((out / "report" / "report.json").read_text())  # the exported student's release report
    assert summary["report"] == str(out / "report" / "report.html") and Path(summary["report"]).is_file()
    exported = next(run for run in students if run["run"] == summary["best_student"])
    assert report["runs"][0]["model"] == summary["onnx"] and report["reference"] == exported["checkpoint"]
    assert report["recommendation"]["name"] == summary["recommendation"] and report["images"] == 64
    assert f"release report: {summary['report']}" in output


def test_summary_tables_are_readable_at_80_columns(quickstart_run: tuple[Path, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tables = summary_tables(json.loads((quickstart_run[0] / "summary.json").read_text()))
    assert_no_cell_cut(tables, render_without_terminal(tables, monkeypatch))


def test_prediction_figure_is_drawn_from_a_quickstart_run(quickstart_run: tuple[Path, str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "figures.py"), "--quickstart",
                             str(quickstart_run[0]), "--images", "2", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "predictions.png") as figure:
        width, height = figure.size
    assert width > 2 * height  # two rows of six panels: image, label, teacher, CE, KD, RDD


def test_synthetic_recipes_are_the_quickstart_regime() -> None:
    from rdd_deploy.distill.config import config_from_dict, load_config
    from rdd_deploy.quickstart import PACKAGED_TEACHER, STUDENT, TEACHER

    assert load_config(ROOT / "configs" / "synthetic" / "teacher.yaml") == config_from_dict(TEACHER)
    student = load_config(ROOT / "configs" / "synthetic" / "student_rdd.yaml")
    expected = {**STUDENT, "distill": {"method": "rdd", "rdd": {"tfe_fraction": 0.1, "threshold": 0.7, "mode": "xor"}},
                "teacher": {"checkpoint": str(PACKAGED_TEACHER.relative_to(ROOT))}}
    assert student == config_from_dict(expected)


def test_packaged_teacher_is_small_and_scores_what_it_says() -> None:
    from rdd_deploy.data import build_dataset
    from rdd_deploy.data.synthetic import majority_floor
    from rdd_deploy.distill.evaluate import evaluate_checkpoint
    from rdd_deploy.quickstart import DATA, PACKAGED_TEACHER, TEACHER

    assert PACKAGED_TEACHER.stat().st_size <= 10 * 2**20
    result = evaluate_checkpoint(PACKAGED_TEACHER, DATA, device="cpu")
    assert result["miou"] >= 0.60
    assert abs(result["miou"] - result["torch_miou"]) < 1e-6  # the file's own record of its score is true
    model, meta = model_from_checkpoint(PACKAGED_TEACHER)
    assert meta["dataset"] == TEACHER["data"]["dataset"] and model.aux_head is not None  # TFE needs the aux head
    # ... and far above a network stuck at the majority class
    assert result["miou"] > majority_floor(build_dataset(DATA, "val")) + 0.5


def test_students_data_is_a_noisier_subset_with_every_class_and_a_low_floor() -> None:
    import numpy as np

    from rdd_deploy.data import build_dataset
    from rdd_deploy.data.synthetic import NAMES, majority_floor
    from rdd_deploy.quickstart import DATA, TEACHER_DATA

    students, teachers = build_dataset(DATA, "train"), build_dataset(TEACHER_DATA, "train")
    assert (len(students), len(teachers)) == (256, 2048)
    assert all(np.array_equal(students.raw(i)[0], teachers.raw(i)[0]) for i in (0, 255))  # the same images ...
    changed = sum((students.raw(i)[1] != teachers.raw(i)[1]).sum() for i in range(64))
    objects = sum((teachers.raw(i)[1] > 0).sum() for i in range(64))
    assert 0.15 < changed / objects < 0.5  # ... with cheaper labels: about a third of the objects relabelled
    val = build_dataset(DATA, "val")
    counts = sum(np.bincount(val.raw(i)[1].ravel(), minlength=len(NAMES)) for i in range(len(val)))
    assert (counts / counts.sum() >= 0.02).all()  # every object class is worth scoring
    floor = majority_floor(val)
    assert floor == counts[0] / counts.sum() / len(NAMES) and 0.05 < floor < 0.10


@pytest.mark.slow
def test_train_teacher_option_trains_the_recipe_instead_of_the_packaged_file(tmp_path: Path) -> None:
    from rdd_deploy.quickstart import PACKAGED_TEACHER, TEACHER, quickstart

    summary = quickstart(tmp_path / "qs", scale=0.002, train_teacher=True)
    teacher = summary["runs"][0]
    assert teacher["checkpoint"] == str(tmp_path / "qs" / "teacher" / "best.pt") != str(PACKAGED_TEACHER)
    model, meta = model_from_checkpoint(teacher["checkpoint"])
    assert meta["dataset"] == TEACHER["data"]["dataset"] and model.aux_head is not None
    assert all(Path(run["checkpoint"]).is_file() for run in summary["runs"])
