"""PyTorch inference latency of the segmentation models: precision x batch x eager / torch.compile.

Each model runs as deployed (FullResolution: logits at the input size, eval mode, random weights: latency does
not depend on them), channels_last, with weights and input cast to the precision (no autocast). On CUDA each
call is timed with its own pair of CUDA events; on CPU with perf_counter. Eager rows come first, then the
compiled ones in priority order (bf16, fp16, fp32); a row that would start after --budget-s is recorded as
skipped, and the JSON is rewritten after every row, so a run stopped from outside keeps what it measured.

FLOP-bound ratio: the model's FLOPs (benchmarks/model_complexity.py, 2 per multiply-add) times the batch over
the median time, against the GPU's dense BF16 tensor-core peak from NVIDIA's datasheets (PEAK_BF16_TFLOPS) and
against an 8192^3 bf16 matrix product measured in the same process. The same peak is used for every precision:
it says how far a row is from the best the chip could do on this work at all.

    python benchmarks/torch_latency.py --device cuda --json latency.json            # the full GPU grid
    python benchmarks/torch_latency.py --models deeplabv3_mbv2 --size 64x128 --batches 1 --modes eager  # CPU
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from host import device_info
from model_complexity import measure as model_complexity

from rdd_deploy.models import FullResolution, build_model
from rdd_deploy.runtime.latency import LatencyStats

MODELS = ("deeplabv3_r101", "deeplabv3_r18", "deeplabv3_mbv2", "pspnet_r18")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Dense BF16 tensor-core peak in TFLOP/s, by a substring of torch.cuda.get_device_name(), first match wins.
# NVIDIA's datasheets give 1,979 TFLOP/s "with sparsity" (2:4) for H100 SXM and H200; dense is half.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                    ("GH200", 989.4), ("A100", 312.0), ("L40S", 362.0), ("A10", 125.0))


def datasheet_peak(device_name: str) -> float | None:
    """The dense BF16 peak (TFLOP/s) of a GPU by its name, None when the table does not know it."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Per-call times in ms after `warmup` untimed calls: CUDA events on a GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return times
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    torch.cuda.synchronize(device)
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def matmul_tflops(device: torch.device, n: int = 8192, iters: int = 10) -> float:
    """Achieved TFLOP/s of an n x n x n bf16 matrix product: what this chip delivers on the easiest work."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    times = time_calls(lambda: a @ b, device, 3, iters)
    return round(2 * n**3 / (sorted(times)[len(times) // 2] * 1e-3) / 1e12, 1)


def significant(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant digits: a slow CPU's small figure stays non-zero, unlike round(x, 2)."""
    return float(f"{value:.{digits}g}")


def plan(models: list[str], batches: list[int], precisions: list[str], modes: list[str]) -> list[dict[str, Any]]:
    """Every row to measure, eager first, then compiled with the lower precisions first."""
    order = sorted(precisions, key=["bf16", "fp16", "fp32"].index)
    return [{"model": m, "precision": p, "batch": b, "mode": mode}
            for mode in modes for p in (order if mode == "compile" else precisions) for m in models for b in batches]


def main() -> None:
    """Measure the grid within the budget and write one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--modes", nargs="+", choices=["eager", "compile"], default=["eager", "compile"])
    parser.add_argument("--compile-backend", default="inductor", help="'eager' traces with dynamo only (cheap)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no row after this many seconds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    started = time.monotonic()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    height, width = (int(v) for v in args.size.split("x"))
    info = device_info()
    name = info["gpu"] if device.type == "cuda" else info["cpu"]
    peak = datasheet_peak(name) if device.type == "cuda" else None
    measured_peak = matmul_tflops(device) if device.type == "cuda" else None
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "device": info, "settings": {**vars(args), "json": None},
        "peak_bf16_tflops": {"datasheet": peak, "measured_matmul": measured_peak,
                             "source": "NVIDIA datasheet, dense = half the with-sparsity figure; measured: "
                                       "8192^3 bf16 torch.matmul, median of 10"},
        "rows": []}
    flops = {m: 2e9 * model_complexity(m, args.classes, height, width)["gmacs"] for m in args.models}
    loaded: dict[tuple[str, str, str], Callable] = {}  # the current (model, precision, mode) only

    def prepared(row: dict[str, Any]) -> Callable:
        key = (row["model"], row["precision"], row["mode"])
        if key not in loaded:
            loaded.clear()
            torch._dynamo.reset()  # dynamo's graph cache is per code object: without this, after 8 graphs of
            # FullResolution.forward it hits its recompile limit and silently runs the rest eagerly
            model = FullResolution(build_model(row["model"], args.classes)).eval()
            model = model.to(device, dtype=DTYPES[row["precision"]], memory_format=torch.channels_last)
            # dynamic=False: each batch size gets its own static graph, as a deployed engine would
            loaded[key] = model if row["mode"] == "eager" else torch.compile(model, backend=args.compile_backend,
                                                                               dynamic=False)
        return loaded[key]

    def write() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")

    for row in plan(args.models, args.batches, args.precisions, args.modes):
        if time.monotonic() - started > args.budget_s:
            report["rows"].append({**row, "status": "skipped: budget"})
            continue
        try:
            model = prepared(row)
            images = torch.randn(row["batch"], 3, height, width, device=device, dtype=DTYPES[row["precision"]])
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                first = time.monotonic()
                time_calls(lambda: model(images), device, 1, 1)  # compiles this shape; cuDNN picks algorithms
                setup_s = time.monotonic() - first
                times = time_calls(lambda: model(images), device, args.warmup, args.iters)
        except Exception as exc:  # noqa: BLE001 -- a row that fails (compile, dtype) is data, not the end
            report["rows"].append({**row, "status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
            write()
            continue
        stats = LatencyStats.from_times(times, row["batch"])
        achieved = flops[row["model"]] * row["batch"] / (stats.median_ms * 1e-3) / 1e9  # GFLOP/s
        report["rows"].append({
            **row, "status": "ok", **{k: round(v, 3) for k, v in stats.__dict__.items()},
            "first_call_s": round(setup_s, 2), "gflops_per_image": significant(flops[row["model"]] / 1e9),
            "achieved_gflops": significant(achieved),
            "vs_datasheet_peak": significant(achieved / 1e3 / peak) if peak else None,
            "vs_measured_matmul": significant(achieved / 1e3 / measured_peak) if measured_peak else None})
        print(f"{row['model']:16s} {row['precision']} b{row['batch']} {row['mode']:7s} "
              f"median {stats.median_ms:8.3f} ms  {achieved:.4g} GFLOP/s", flush=True)
        del images
        write()
    report["seconds"] = round(time.monotonic() - started, 1)
    write()


if __name__ == "__main__":
    main()
