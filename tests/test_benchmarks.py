"""The benchmark scripts run from a clean install and write the fields docs/benchmarks.md is built from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_times_every_method_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "train_step.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--student",
                             "deeplabv3_mbv2", "--teacher", "deeplabv3_r18", "--size", "32x64", "--batch", "2",
                             "--classes", "4", "--rounds", "2", "--warmup", "0", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for kind in ("step", "loss"):
        assert set(report[kind]) == {"ce", "kd", "rdd_tfe", "rdd_tse"}
        assert report[kind]["kd"]["vs_kd"] == 1.0 and all(row["median_ms"] > 0 for row in report[kind].values())
    assert report["peak_rss_gib"] > 0.1 and report["device"]["cores"] >= 1


def test_train_step_with_one_method_reports_no_missing_ratio(tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--student",
                             "deeplabv3_mbv2", "--teacher", "deeplabv3_r18", "--size", "32x64", "--batch", "2",
                             "--rounds", "1", "--warmup", "0", "--methods", "rdd_tse", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert list(json.loads(out.read_text())["step"]) == ["rdd_tse"]
