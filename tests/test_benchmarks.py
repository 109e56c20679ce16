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
