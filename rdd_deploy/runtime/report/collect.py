"""Measure every run of a release candidate: accuracy (as `validate`), parity (as `parity`), latency (as `bench`).

A run is one exported file on one backend at one precision, as `bench --backend all` times them. Accuracy and
parity come from one pass over the val images: `parity.accumulate` runs each image through the reference once and
through every run, and each run's scores are read from its metric by `evaluate.validation_result`, the function behind
`validate`. The reference run itself (the FP32 ONNX file, when no checkpoint is given) reuses the reference's logits
and gets no parity verdict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rdd_deploy.runtime.evaluate import validation_result
from rdd_deploy.runtime.latency import benchmark_all
from rdd_deploy.runtime.parity import accumulate
from rdd_deploy.runtime.segmenter import Segmenter

Samples = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # a fresh pass over the labelled val images


@dataclass
class Run:
    """One exported file opened on one backend at one OpenVINO precision hint."""

    path: Path
    backend: str
    hint: str
    segmenter: Segmenter
    is_reference: bool = False  # the file the others are compared with (no checkpoint given)

    @property
    def name(self) -> str:
        """'student_int8.onnx · onnxruntime' or '... · openvino bf16'."""
        backend = self.segmenter.engine.backend
        return f"{self.path.name} · {backend}" + (f" {self.hint}" if backend == "openvino" else "")


def open_runs(files: list[Path], first_is_reference: bool, providers: list[str] | None = None) -> list[Run]:
    """Every run `bench --backend all` would time for these files; with first_is_reference, the first file's ONNX
    Runtime run is the reference the others are compared with."""
    from rdd_deploy.runtime.engine import available_runs

    return [Run(path, backend, hint, Segmenter.from_file(path, backend, providers, hint),
                is_reference=first_is_reference and index == 0 and backend == "onnxruntime")
            for index, path in enumerate(files) for backend, hint in available_runs(path)]


class Hashing:
    """Passes samples through and hashes their pixels and labels: the content hash of the data the report saw."""

    def __init__(self, samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        self.samples, self.digest = samples, hashlib.sha256()

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for image, label in self.samples:
            for array in (image, label):
                self.digest.update(f"{array.dtype}{array.shape}".encode())
                self.digest.update(np.ascontiguousarray(array).tobytes())
            yield image, label

    def hexdigest(self) -> str:
        """The SHA-256 of every sample seen so far."""
        return self.digest.hexdigest()


def collect(reference: Segmenter, runs: list[Run], samples: Samples, ignore_index: int | None,
            input_size: tuple[int, int], warmup: int, iters: int,
            on_step: Callable[[str], None] = lambda step: None) -> dict[str, Any]:
    """Every number of the report, JSON-ready (no recommendation yet): per run accuracy, parity and latency."""
    on_step(f"scoring {len(runs)} runs on the val images")
    hashing = Hashing(samples())
    stats = accumulate(reference, [run.segmenter for run in runs], hashing, ignore_index)
    results = []
    for run, accumulator in zip(runs, stats):
        parity = None if run.is_reference else accumulator.report(run.segmenter.info.precision).to_dict()
        results.append({"name": run.name, "model": str(run.path), "backend": run.segmenter.engine.backend,
                        "precision_hint": run.hint, "precision": run.segmenter.info.precision,
                        "is_reference": run.is_reference,
                        "accuracy": validation_result(run.segmenter, accumulator.candidate, accumulator.labelled),
                        "parity": parity})
    on_step(f"timing {len(runs)} runs interleaved ({warmup} warm-up + {iters} rounds)")
    latencies = benchmark_all([run.segmenter for run in runs], input_size, 1, warmup, iters,
                              [run.path for run in runs])
    for result, latency in zip(results, latencies):
        result["latency"] = latency.to_dict()
        result["file_size_mb"] = latency.settings["file_size_mb"]
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "data_sha256": hashing.hexdigest(),
            "images": results[0]["accuracy"]["images"], "runs": results}

