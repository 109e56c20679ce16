"""The benchmark scripts run from a clean install and write the fields docs/benchmarks.md is built from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def train_step(out: Path, *options: str) -> dict[str, Any]:
    """Run benchmarks/train_step.py on a tiny student/teacher pair and return its JSON."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--student",
                             "deeplabv3_mbv2", "--teacher", "deeplabv3_r18", "--size", "32x64", "--batch", "2",
                             "--classes", "4", "--warmup", "0", "--json", str(out), *options],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def test_train_step_times_every_method_side_by_side(tmp_path: Path) -> None:
    report = train_step(tmp_path / "all.json", "--rounds", "2")
    for kind in ("step", "loss"):
        assert set(report[kind]) == {"ce", "kd", "rdd_tfe", "rdd_tse"}
        assert report[kind]["kd"]["vs_kd"] == 1.0 and all(row["median_ms"] > 0 for row in report[kind].values())
    assert report["peak_rss_gib"] > 0.1 and report["device"]["cores"] >= 1


def test_train_step_with_one_method_reports_no_missing_ratio(tmp_path: Path) -> None:
    report = train_step(tmp_path / "one.json", "--rounds", "1", "--methods", "rdd_tse")
    assert list(report["step"]) == ["rdd_tse"] and set(report["step"]["rdd_tse"]) == {"median_ms", "min_ms"}


def test_accuracy_study_quick_path_is_paired_and_resumable(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "accuracy_study.py"), "--quick", "--student-iters", "2",
               "--variants", "ce", "kd", "rdd", "--jobs", "1", "--out", str(tmp_path / "runs"),
               "--json", str(tmp_path / "study.json"), "--figure", str(tmp_path / "study.png")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "study.json").read_text())
    assert report["settings"]["seeds"] == [0, 1] and set(report["students"]) == {"ce", "kd", "rdd"}
    rdd = report["students"]["rdd"]
    kd_runs = report["students"]["kd"]["runs"]
    paired = [rdd["runs"][s] - kd_runs[s] for s in ("0", "1")]
    assert abs(rdd["vs_kd"]["mean"] - sum(paired) / 2) < 1e-12 and rdd["vs_kd"]["seeds"] == 2
    low, high = rdd["vs_kd"]["ci95"]
    assert low <= rdd["vs_kd"]["mean"] <= high
    assert "vs_kd" not in report["students"]["kd"] and 0 < report["majority_floor"] < report["teacher_miou"]
    assert (tmp_path / "study.png").stat().st_size > 1000
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # every run is reused
    assert again.returncode == 0 and json.loads((tmp_path / "study.json").read_text())["students"] == report["students"]
