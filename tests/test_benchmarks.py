"""The benchmark scripts run from a clean install and write the fields docs/benchmarks.md is built from."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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
    assert list(report["step"]) == ["rdd_tse"]
    assert set(report["step"]["rdd_tse"]) == {"median_ms", "min_ms", "images_per_s"}  # no peak_memory_gib on CPU
    assert report["step"]["rdd_tse"]["images_per_s"] == pytest.approx(2e3 / report["step"]["rdd_tse"]["median_ms"],
                                                                      rel=1e-2)


def test_accuracy_study_quick_path_is_paired_and_resumable(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "accuracy_study.py"), "--quick", "--student-iters", "2",
               "--variants", "ce", "kd", "rdd", "--jobs", "1", "--mislabel", "50", "--out", str(tmp_path / "runs"),
               "--json", str(tmp_path / "study.json"), "--figure", str(tmp_path / "study.png")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "study.json").read_text())
    assert report["settings"]["seeds"] == [0, 1] and set(report["students"]) == {"ce", "kd", "rdd"}
    assert report["settings"]["data"] == "synthetic:size=64,train=256,val=64,seed=0,mislabel=50"
    rdd = report["students"]["rdd"]
    kd_runs = report["students"]["kd"]["runs"]
    paired = [rdd["runs"][s]["miou"] - kd_runs[s]["miou"] for s in ("0", "1")]
    assert abs(rdd["vs_kd"]["mean"] - sum(paired) / 2) < 1e-12 and rdd["vs_kd"]["seeds"] == 2
    low, high = rdd["vs_kd"]["ci95"]
    assert low <= rdd["vs_kd"]["mean"] <= high
    boundary = [rdd["runs"][s]["boundary_miou"] - kd_runs[s]["boundary_miou"] for s in ("0", "1")]
    assert abs(rdd["metrics"]["boundary_miou"]["vs_kd"]["mean"] - sum(boundary) / 2) < 1e-12
    assert set(rdd["per_class"]["iou"]) == set(kd_runs["0"]["iou"]) and len(kd_runs["0"]["boundary_iou"]) == 8
    assert 0 < rdd["tse_selected"] <= 1 and report["students"]["kd"]["tse_selected"] is None
    assert "vs_kd" not in report["students"]["kd"] and 0 < report["majority_floor"] < report["teacher_miou"]
    assert (tmp_path / "study.png").stat().st_size > 1000
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # every run is reused
    assert again.returncode == 0 and json.loads((tmp_path / "study.json").read_text())["students"] == report["students"]
    other = command[:command.index("--student-iters") + 1] + ["3"] + command[command.index("--student-iters") + 2:]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=600)  # never reuse another recipe's run
    assert refused.returncode != 0 and "holds a run of another recipe" in refused.stderr.strip().splitlines()[-1]


def test_seed_plan_reaches_the_asked_interval_with_the_fewest_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy import stats

    study = load_script("accuracy_study", monkeypatch)
    half = lambda n, sd: stats.t.ppf(0.975, n - 1) * sd / n ** 0.5  # noqa: E731
    for sd, width in ((1.62, 1.0), (3.46, 2.0), (0.3, 1.0)):
        n = study.seeds_needed(sd, width)
        assert half(n, sd) <= width and (n == 2 or half(n - 1, sd) > width)
    previous = {"students": {"kd": {"runs": {"0": 0.40, "1": 0.42, "2": 0.41}},
                             "rdd": {"runs": {"0": {"miou": 0.41}, "1": {"miou": 0.42}, "2": {"miou": 0.43}}}}}
    plan = study.plan_seeds(previous, 1.0)
    assert plan["pilot_mean"] == pytest.approx(1.0) and plan["paired_sd"] == pytest.approx(1.0)
    assert plan["seeds_needed"] == study.seeds_needed(1.0, 1.0)


def load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a benchmarks/ script as a module (its sibling imports resolved from benchmarks/)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_largest_batch_extrapolates_two_peak_memory_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    largest = load_script("device_check", monkeypatch).largest_batch
    assert largest({4: 10.0, 8: 18.0}, 80.0) == 35  # 2 GiB per image + 2 GiB fixed, 72 GiB usable
    assert largest({8: 18.0, 4: 10.0}, 16.0) == 8  # never below the batch measured to fit
    with pytest.raises(ValueError, match="does not grow"):
        largest({4: 10.0, 8: 10.0}, 80.0)


def test_bf16_peak_table_tells_the_h100_variants_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    peak = load_script("torch_latency", monkeypatch).datasheet_peak
    assert peak("NVIDIA H100 80GB HBM3") == peak("NVIDIA H200") == 989.4
    assert peak("NVIDIA H100 PCIe") == 756.0 and peak("NVIDIA GeForce RTX 3090") is None


@pytest.mark.slow
def test_device_check_smoke_runs_every_stage_into_one_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--smoke", "--out",
                             str(out)], capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = json.loads((out / "device_check.json").read_text())["stages"]
    assert list(stages) == ["env", "tests", "train", "latency", "accuracy"]
    assert stages["env"]["device"]["cores"] >= 1 and stages["env"]["packages"]["pydantic"] is True
    counts = stages["tests"]["counts"]
    assert counts["tests"] >= 6 and counts["failures"] == counts["errors"] == 0  # the CUDA set, collected
    assert set(stages["train"]["runs"]) == {"batch2_contiguous", "batch2_channels_last"}
    for run in stages["train"]["runs"].values():
        assert set(run["step"]) == {"ce", "kd", "rdd_tfe", "rdd_tse"} and run["settings"]["amp"] == "bf16"
    rows = stages["latency"]["rows"]
    assert [(r["precision"], r["mode"], r["status"]) for r in rows] == [
        ("fp32", "eager", "ok"), ("bf16", "eager", "ok"), ("bf16", "compile", "ok"), ("fp32", "compile", "ok")]
    for row in rows:  # significant digits, never rounded to 0 by a slow CPU; no speed is asserted
        assert math.isfinite(row["achieved_gflops"]) and row["achieved_gflops"] > 0, row
        assert row["gflops_per_image"] > 0, row
    assert stages["accuracy"]["status"] in {"ok", "failed", "timed_out"}  # best effort, recorded either way
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"device_check.json", "device_check.log", "cuda_tests.xml"} <= set(files)
    assert "| batch2_contiguous | rdd_tse |" in result.stdout


def test_check_data_benchmark_compares_with_decoding_in_one_run(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "check_data.py"), "--pairs", "4", "--size",
                             "32x64", "--rounds", "1", "--json", str(tmp_path / "check.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["problems"] == [] and report["pairs"] == 4 and report["device"]["cores"] >= 1
    rates = report["pairs_per_s"]
    assert report["check_vs_decode"] == pytest.approx(rates["check_data"] / rates["decode_only"], rel=1e-2)
