"""PyTorch eager vs ONNX Runtime FP32 / FP16 / INT8 on CPU: latency, ratio to PyTorch and accuracy change.

    python benchmarks/export_latency.py --json docs/results/export_latency.json
    python benchmarks/export_latency.py --quick                      # one model, one size, fewer runs
    python benchmarks/export_latency.py --trained runs/student/best.pt --trained runs/teacher/best.pt

Full-size rows (deeplabv3_r18, deeplabv3_mbv2, pspnet_r18 with 19 classes, 512x1024 and 256x512) use
random-init checkpoints: latency does not depend on the weights, and their parity is agreement with PyTorch on
scikit-image's photos only. mIoU changes come from trained checkpoints (--trained, or a short CE run on the
synthetic set when none is given), measured on that checkpoint's validation set at its own crop size.

All backends of one row are timed interleaved (one call of each per round), so a background load hits them
alike and the ratios stay fair even where absolute times drift. The wrapper-overhead row compares a bare
onnxruntime.InferenceSession fed a pre-normalised array with Segmenter.predict on a uint8 image, interleaved.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from host import device_info
from random_weights import random_checkpoint
from trained_models import add_trained_arguments, short_ce_run

from rdd_deploy.checkpoint import load_checkpoint
from rdd_deploy.data import build_dataset
from rdd_deploy.data.cityscapes import INFO as CITYSCAPES
from rdd_deploy.export import ExportOptions, export
from rdd_deploy.export.formats import artifact_name
from rdd_deploy.parity import torch_segmenter
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.evaluate import dataset_samples
from rdd_deploy.runtime.latency import LatencyStats
from rdd_deploy.runtime.latency import interleave as timed_rounds
from rdd_deploy.runtime.parity import compare, reference_photos

MODELS = ("deeplabv3_r18", "deeplabv3_mbv2", "pspnet_r18")
SIZES = ((512, 1024), (256, 512))
PRECISIONS = ("fp16", "int8")  # fp32 is written by every export


def interleave(calls: dict[str, Callable[[], object]], warmup: int, iters: int) -> dict[str, dict[str, Any]]:
    """Latency statistics of every call, timed one call of each per round so that load drift hits all alike."""
    return {name: LatencyStats.from_times(t).__dict__ for name, t in timed_rounds(calls, warmup, iters).items()}


def measure(checkpoint: Path, size: tuple[int, int], trained: bool, out: Path, args: argparse.Namespace,
            warmup: int, iters: int) -> dict[str, Any]:
    """Export one checkpoint at one size to fp32/fp16/int8, then time and compare all four against PyTorch."""
    stored = load_checkpoint(checkpoint)
    calib = stored["meta"]["dataset"] if trained else "synthetic"
    files: dict[str, Path] = {}
    for precision in PRECISIONS:
        options = ExportOptions(precision=precision, input_size=size, out=out, verify=False, calib_data=calib,
                                calib_images=args.calib_images)
        written = export(checkpoint, options)
        files.update({"fp32": written[0], precision: written[1]})
    onnx = {p: Segmenter.from_file(files[p]) for p in ("fp32", *PRECISIONS)}
    segmenters = {"pytorch": torch_segmenter(checkpoint, like=onnx["fp32"], device="cpu"), **onnx}
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    calls: dict[str, Callable[[], object]] = {}
    for name, segmenter in segmenters.items():
        prepared = segmenter.prepare([image])
        calls[f"{name}/engine"] = lambda segmenter=segmenter, prepared=prepared: segmenter.run(prepared)
        calls[f"{name}/end_to_end"] = lambda segmenter=segmenter: segmenter.predict(image)
    latency = interleave(calls, warmup, iters)
    # 19 random-init classes have no labels to score: their parity is argmax agreement on photos only
    val = build_dataset(calib, "val") if trained else None
    photos = None if trained else reference_photos()
    rows = []
    for name in segmenters:
        row: dict[str, Any] = {"backend": name}
        for kind in ("engine", "end_to_end"):
            row[kind] = latency[f"{name}/{kind}"]
            row[f"{kind}_ratio"] = row[kind]["mean_ms"] / latency[f"pytorch/{kind}"]["mean_ms"]
        if name != "pytorch":
            row["file_mb"] = round(files[name].stat().st_size / 2**20, 2)
            samples = dataset_samples(val, max_images=args.val_images) if val is not None else photos  # streamed
            row["parity"] = compare(segmenters["pytorch"], segmenters[name], samples).to_dict()
        rows.append(row)
    spec = stored["model_spec"]
    return {"model": spec["name"], "width_mult": spec.get("width_mult", 1.0), "num_classes": spec["num_classes"],
            "checkpoint": str(checkpoint), "trained": trained, "input_size": list(size), "warmup": warmup,
            "iters": iters, "rows": rows}


def wrapper_overhead(onnx_path: Path, size: tuple[int, int], warmup: int, iters: int) -> dict[str, Any]:
    """Segmenter.predict (uint8 image -> mask) vs a bare InferenceSession.run on a pre-normalised array."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    segmenter = Segmenter.from_file(onnx_path)
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    feed = {session.get_inputs()[0].name: segmenter.prepare([image])}
    stats = interleave({"bare_session_run": lambda: session.run(None, feed),
                        "segmenter_predict": lambda: segmenter.predict(image)}, warmup, iters)
    overhead = stats["segmenter_predict"]["mean_ms"] / stats["bare_session_run"]["mean_ms"] - 1
    median = stats["segmenter_predict"]["median_ms"] / stats["bare_session_run"]["median_ms"] - 1
    return {"model": str(onnx_path.name), "input_size": list(size), "warmup": warmup, "iters": iters, **stats,
            "overhead_mean": overhead, "overhead_median": median}


def main() -> None:
    """Parse arguments, run every (model, size) and the trained rows, write JSON and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("docs/results/export_latency.json"))
    parser.add_argument("--quick", action="store_true", help="deeplabv3_r18 at 256x512 only, fewer runs")
    add_trained_arguments(parser, 150, "mIoU rows")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=6, help="timed rounds at 512x1024 (x4 at smaller sizes)")
    parser.add_argument("--overhead-iters", type=int, default=30, help="rounds of the wrapper-overhead row")
    args = parser.parse_args()
    models, sizes = (MODELS[:1], SIZES[1:]) if args.quick else (MODELS, SIZES)
    iters = max(2, args.iters // 2) if args.quick else args.iters
    started = time.perf_counter()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "device": device_info(), "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trained = args.trained or [short_ce_run(work / "student", args.train_iters)]
        for path in trained:
            crop = tuple(load_checkpoint(path)["meta"]["crop_size"])
            results["cases"].append(measure(path, crop, True, work / f"t{len(results['cases'])}", args,
                                            args.warmup * 5, iters * 10))
        for name in models:
            # full size, 19 Cityscapes classes, random weights: enough for latency, not for mIoU
            spec = {"name": name, "aux_head": False, "head_channels": 256, "width_mult": 1.0}
            checkpoint = random_checkpoint(work / name / "random.pt", spec, CITYSCAPES.class_names, SIZES[0])
            for size in sizes:
                small = size[0] * size[1] < 512 * 1024
                print(f"{name} {size[0]}x{size[1]} ...", flush=True)
                results["cases"].append(measure(checkpoint, size, False, work / name / f"{size[0]}x{size[1]}",
                                                args, args.warmup, iters * 4 if small else iters))
        overhead_size = sizes[0]
        fp32 = work / models[0] / f"{overhead_size[0]}x{overhead_size[1]}" / artifact_name(
            models[0], overhead_size, dynamic=False, precision="fp32", fmt="onnx")
        results["wrapper_overhead"] = wrapper_overhead(fp32, overhead_size, args.warmup, args.overhead_iters)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    for case in results["cases"]:
        for row in case["rows"]:
            parity = {k: float("nan") if v is None else v for k, v in row.get("parity", {}).items()}
            print(f"{case['model']:15} {case['input_size'][0]:4}x{case['input_size'][1]:<5} {row['backend']:8} "
                  f"engine {row['engine']['mean_ms']:9.1f} ms ({row['engine_ratio']:.2f}x)  e2e "
                  f"{row['end_to_end']['mean_ms']:9.1f} ms ({row['end_to_end_ratio']:.2f}x)  agree "
                  f"{parity.get('agreement', float('nan')):.4f} dmIoU {parity.get('miou_diff', float('nan')):+.3f}")
    print(f"wrapper overhead: {100 * results['wrapper_overhead']['overhead_mean']:+.1f} % "
          f"(median {100 * results['wrapper_overhead']['overhead_median']:+.1f} %); {results['seconds']} s")


if __name__ == "__main__":
    main()
