"""Latency the trtexec way: warm-up excluded, many timed runs, order statistics, and the settings stated."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rdd_deploy.runtime.engine import host_description, model_format
from rdd_deploy.runtime.segmenter import Segmenter

Clock = Callable[[], float]


def time_callable(fn: Callable[[], object], warmup: int, iters: int,
                  clock: Clock = time.perf_counter) -> list[float]:
    """Call fn `warmup` times untimed, then `iters` times; return each timed call's duration in ms."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters} warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = clock()
        fn()
        times.append((clock() - start) * 1000.0)
    return times


@dataclass(frozen=True)
class LatencyStats:
    """Order statistics of per-call times in ms (percentiles: numpy 'linear'; std: population, ddof=0)."""

    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float
    fps: float  # images per second: batch * 1000 / mean_ms

    @classmethod
    def from_times(cls, times_ms: Sequence[float], batch: int = 1) -> LatencyStats:
        """Statistics of a list of per-call durations for calls that each process `batch` images."""
        t = np.asarray(times_ms, dtype=np.float64)
        if t.size == 0:
            raise ValueError("no timings")
        p50, p90, p99 = np.percentile(t, [50, 90, 99])
        mean = float(t.mean())
        return cls(min_ms=float(t.min()), mean_ms=mean, median_ms=float(p50), p90_ms=float(p90),
                   p99_ms=float(p99), max_ms=float(t.max()), std_ms=float(t.std()),
                   fps=batch * 1000.0 / mean if mean > 0 else float("inf"))


@dataclass(frozen=True)
class LatencyReport:
    """Engine-only and end-to-end statistics of one model, with every setting needed to compare two runs."""

    settings: dict[str, Any]
    engine: LatencyStats
    end_to_end: LatencyStats

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: settings, engine, end_to_end."""
        return {"settings": dict(self.settings), "engine": asdict(self.engine), "end_to_end": asdict(self.end_to_end)}


def speedups(reports: Sequence[LatencyReport], reference: int = 0) -> list[float]:
    """End-to-end speed-up of each report over reports[reference] (its mean time / theirs)."""
    base = reports[reference].end_to_end.mean_ms
    return [base / report.end_to_end.mean_ms for report in reports]


def interleave(calls: dict[str, Callable[[], object]], warmup: int, iters: int,
               clock: Clock = time.perf_counter) -> dict[str, list[float]]:
    """Per-call durations in ms of every call, timed one call of each per round so that a background load (or a
    CPU clock that drifts) hits them all alike; `warmup` untimed rounds first."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters} warmup={warmup}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iters):
        for name, call in calls.items():
            times[name] += time_callable(call, 0, 1, clock)
    return times


def benchmark_all(segmenters: Sequence[Segmenter], input_size: tuple[int, int] = (512, 1024), batch: int = 1,
                  warmup: int = 20, iters: int = 200, model_paths: Sequence[str | os.PathLike | None] | None = None,
                  clock: Clock = time.perf_counter) -> list[LatencyReport]:
    """Time several Segmenters side by side on `batch` uint8 images of `input_size` (H, W), interleaved.

    engine: the prepared (resized, normalised) batch fed to the engine, host<->device copies included, as
    ONNX Runtime users see it; end_to_end: uint8 images -> masks, with pre- and post-processing. Each round
    runs every model's engine call then its end-to-end call, so the ratios between models stay fair.
    """
    rng = np.random.default_rng(0)  # content does not change the work done by a segmentation network
    images = [rng.integers(0, 256, (*input_size, 3), dtype=np.uint8) for _ in range(batch)]
    paths = list(model_paths) if model_paths is not None else [None] * len(segmenters)
    prepared = [segmenter.prepare(images) for segmenter in segmenters]
    calls: dict[str, Callable[[], object]] = {}
    for index, (segmenter, batch_input) in enumerate(zip(segmenters, prepared)):
        calls[f"{index}/engine"] = lambda segmenter=segmenter, batch_input=batch_input: segmenter.run(batch_input)
        calls[f"{index}/end_to_end"] = lambda segmenter=segmenter: segmenter.predict_batch(images)
    times = interleave(calls, warmup, iters, clock)
    reports = []
    for index, (segmenter, path) in enumerate(zip(segmenters, paths)):
        path = Path(path) if path is not None else None
        settings = {
            "model": str(path) if path else segmenter.source,
            "model_name": segmenter.info.model_name,
            "format": model_format(path) if path else segmenter.engine.backend,
            "file_size_mb": round(path.stat().st_size / 2**20, 3) if path and path.is_file() else None,
            "precision": segmenter.info.precision,
            "backend": segmenter.engine.backend,
            "provider": segmenter.engine.provider,
            "device": segmenter.engine.device,
            "host": host_description(),
            "input_size": list(input_size),
            "network_input_shape": list(prepared[index].shape),
            "input_layout": segmenter.info.input_layout,
            "batch": batch,
            "warmup": warmup,
            "iters": iters,
            "interleaved_with": len(segmenters) - 1,
            "clock": getattr(clock, "__name__", str(clock)),
        }
        reports.append(LatencyReport(settings, LatencyStats.from_times(times[f"{index}/engine"], batch),
                                     LatencyStats.from_times(times[f"{index}/end_to_end"], batch)))
    return reports


def benchmark(segmenter: Segmenter, input_size: tuple[int, int] = (512, 1024), batch: int = 1, warmup: int = 20,
              iters: int = 200, model_path: str | os.PathLike | None = None,
              clock: Clock = time.perf_counter) -> LatencyReport:
    """Time one Segmenter (see `benchmark_all`): engine-only and end-to-end calls alternate."""
    return benchmark_all([segmenter], input_size, batch, warmup, iters, [model_path], clock)[0]
