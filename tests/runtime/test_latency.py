"""Latency statistics from injected clock readings, and a real benchmark's report layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rdd_deploy.runtime import LatencyStats, Segmenter, benchmark, time_callable


class FakeClock:
    """Returns readings so that the k-th timed call lasts durations[k] ms."""

    def __init__(self, durations_ms: list[float]) -> None:
        self.readings = iter(np.cumsum([[0.0, d / 1000.0] for d in durations_ms]).tolist())

    def __call__(self) -> float:
        return next(self.readings)


def test_warmup_is_not_timed_and_durations_come_from_the_clock() -> None:
    calls = []
    times = time_callable(lambda: calls.append(1), warmup=3, iters=4, clock=FakeClock([4.0, 1.0, 3.0, 2.0]))
    assert len(calls) == 7
    assert times == pytest.approx([4.0, 1.0, 3.0, 2.0])


def test_order_statistics() -> None:
    times = [float(v) for v in range(1, 101)]  # 1..100 ms, shuffled: statistics must not depend on order
    np.random.default_rng(0).shuffle(times)
    stats = LatencyStats.from_times(times, batch=4)
    assert (stats.min_ms, stats.max_ms, stats.mean_ms, stats.median_ms) == (1.0, 100.0, 50.5, 50.5)
    assert stats.p90_ms == pytest.approx(90.1) and stats.p99_ms == pytest.approx(99.01)  # linear interpolation
    assert stats.std_ms == pytest.approx(np.sqrt((100**2 - 1) / 12))  # population std of 1..100
    assert stats.fps == pytest.approx(4 * 1000 / 50.5)


def test_benchmark_report_states_its_settings(dynamic_onnx: Path) -> None:
    clock = FakeClock([2.0, 5.0] * 3)  # engine and end-to-end calls alternate
    report = benchmark(Segmenter.from_file(dynamic_onnx), (40, 48), batch=2, warmup=1, iters=3,
                       model_path=dynamic_onnx, clock=clock)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["engine"]["mean_ms"] == pytest.approx(2.0) and data["end_to_end"]["fps"] == pytest.approx(400.0)
    settings = data["settings"]
    assert settings["network_input_shape"] == [2, 3, 40, 48] and settings["format"] == "onnx"
    assert settings["provider"] == "CPUExecutionProvider" and settings["precision"] == "fp32"
    assert settings["file_size_mb"] == pytest.approx(dynamic_onnx.stat().st_size / 2**20, abs=1e-3)
    assert {"host", "device", "warmup", "iters", "batch", "input_size"} <= set(settings)
