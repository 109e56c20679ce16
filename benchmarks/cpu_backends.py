"""CPU backends side by side: ONNX Runtime FP32 / INT8 and OpenVINO f32 / bf16 / INT8 on the same ONNX files.

    python benchmarks/cpu_backends.py --json docs/results/cpu_backends.json
    python benchmarks/cpu_backends.py --quick        # DeepLabV3-R18 at 256x512 only

Accuracy first: each architecture trained briefly with cross-entropy on the synthetic set (or --trained
checkpoints), exported at its crop size, and compared with PyTorch on its validation images by
`rdd_deploy.runtime.compare`: argmax agreement and mIoU change of every backend/precision, judged by the runtime's
parity tolerances.

Latency: DeepLabV3-R18, DeepLabV3-MBV2 and PSPNet-R18 with 19 random-init classes at 512x1024 (latency does not
depend on the weights), each exported once to FP32 and INT8, then every backend/precision's engine call timed
interleaved by `rdd_deploy.runtime.latency.interleave` (one call of each per round), so a background load hits
them alike; ratios are to ONNX Runtime FP32 (mean, median and min: on a shared CPU the min is the least
disturbed). End-to-end times add the same numpy pre/post-processing to every row: `rdd-deploy bench` shows them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from functools import partial
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
from rdd_deploy.export.quantize import host_scheme
from rdd_deploy.parity import torch_segmenter
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.evaluate import dataset_samples
from rdd_deploy.runtime.int8_targets import cpu_flags
from rdd_deploy.runtime.latency import LatencyStats, interleave
from rdd_deploy.runtime.openvino_engine import cpu_capabilities, import_openvino
from rdd_deploy.runtime.parity import compare

MODELS = ("deeplabv3_r18", "deeplabv3_mbv2", "pspnet_r18")
# row name -> (file precision, backend, OpenVINO precision hint)
RUNS = {"ort fp32": ("fp32", "onnxruntime", "f32"), "ort int8": ("int8", "onnxruntime", "f32"),
        "openvino f32": ("fp32", "openvino", "f32"), "openvino bf16": ("fp32", "openvino", "bf16"),
        "openvino int8": ("int8", "openvino", "f32"), "openvino int8+bf16": ("int8", "openvino", "bf16")}
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def host_runs() -> dict[str, tuple[str, str, str]]:
    """RUNS less the bf16 rows where OpenVINO's CPU plugin has no bf16."""
    bf16 = "BF16" in cpu_capabilities()
    return {name: run for name, run in RUNS.items() if bf16 or run[2] != "bf16"}


def export_pair(checkpoint: Path, size: tuple[int, int], out: Path, calib: str, calib_images: int) -> dict[str, Path]:
    """The FP32 and INT8 ONNX files of a checkpoint (unverified: parity is measured here instead)."""
    fp32, int8 = export(checkpoint, ExportOptions(precision="int8", input_size=size, out=out, verify=False,
                                                  calib_data=calib, calib_images=calib_images))
    return {"fp32": fp32, "int8": int8}


def open_runs(files: dict[str, Path]) -> dict[str, Segmenter]:
    """One Segmenter per row of host_runs()."""
    return {name: Segmenter.from_file(files[precision], backend, precision_hint=hint)
            for name, (precision, backend, hint) in host_runs().items()}


def latency_case(name: str, size: tuple[int, int], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every row's engine call (the network alone: pre/post-processing is the same numpy code for all) timed
    interleaved on one random-init 19-class model."""
    spec = {"name": name, "aux_head": False, "head_channels": 256, "width_mult": 1.0}
    checkpoint = random_checkpoint(work / "random.pt", spec, CITYSCAPES.class_names, size)
    # 2 calibration images: the weights are random and only the graph's speed is measured here, while each
    # full-size image costs ORT's calibrator seconds and gigabytes
    files = export_pair(checkpoint, size, work, "synthetic", 2)
    segmenters = open_runs(files)
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    calls = {row: partial(segmenter.run, segmenter.prepare([image])) for row, segmenter in segmenters.items()}
    stats = {row: LatencyStats.from_times(times) for row, times in interleave(calls, args.warmup, args.iters).items()}
    base = stats["ort fp32"]
    rows = [{"run": row, **asdict(stat), "ratio_mean": stat.mean_ms / base.mean_ms,
             "ratio_median": stat.median_ms / base.median_ms, "ratio_min": stat.min_ms / base.min_ms,
             "provider": segmenters[row].engine.provider, "precision": segmenters[row].info.precision}
            for row, stat in stats.items()]
    return {"model": name, "input_size": list(size), "warmup": args.warmup, "iters": args.iters,
            "file_mb": {p: round(f.stat().st_size / 2**20, 2) for p, f in files.items()}, "rows": rows}


def accuracy_case(checkpoint: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Agreement and mIoU change of every row against PyTorch on the checkpoint's own validation images."""
    stored = load_checkpoint(checkpoint)
    dataset, size = stored["meta"]["dataset"], tuple(stored["meta"]["crop_size"])
    files = export_pair(checkpoint, size, work, dataset, args.calib_images)
    segmenters = open_runs(files)
    reference = torch_segmenter(checkpoint, like=segmenters["ort fp32"], device="cpu")
    val = build_dataset(dataset, "val")
    rows = [{"run": row, **compare(reference, segmenter, dataset_samples(val, args.val_images)).to_dict()}
            for row, segmenter in segmenters.items()]
    return {"checkpoint": str(checkpoint), "model": stored["model_spec"]["name"], "data": dataset,
            "input_size": list(size), "torch_miou": stored["meta"].get("miou"), "rows": rows}


def write(path: Path, results: dict[str, Any], started: float) -> None:
    """The results so far, as JSON."""
    results["seconds"] = round(time.perf_counter() - started, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    """Parse arguments, run the latency and accuracy cases, write JSON and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("docs/results/cpu_backends.json"))
    parser.add_argument("--quick", action="store_true", help="DeepLabV3-R18 at 256x512 only, two rounds")
    add_trained_arguments(parser, 200, "accuracy rows, one short run per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3, help="timed interleaved rounds per model")
    args = parser.parse_args()
    ov = import_openvino()
    models = MODELS[:1] if args.quick else MODELS
    size = (256, 512) if args.quick else (512, 1024)
    flags = cpu_flags()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": {**device_info(), "openvino": ov.__version__, "cpu_features": [f for f in FEATURES if f in flags],
                   "openvino_capabilities": cpu_capabilities(), "int8_scheme": host_scheme().to_metadata()},
        "latency": [], "accuracy": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # ResNet-18 at full width, MobileNetV2 at the quickstart student's 0.35
        trained = args.trained or [
            short_ce_run(work / f"trained_{name}", args.train_iters,
                         {"name": name, "head_channels": 32, "width_mult": 0.35 if "mbv2" in name else 1.0})
            for name in models]
        for index, checkpoint in enumerate(trained):
            print(f"accuracy {checkpoint} ...", flush=True)
            results["accuracy"].append(accuracy_case(checkpoint, work / f"accuracy_{index}", args))
            write(args.json, results, started)
        for name in models:
            print(f"latency {name} {size[0]}x{size[1]} ...", flush=True)
            results["latency"].append(latency_case(name, size, work / name, args))
            write(args.json, results, started)  # each case as it ends: a shared CPU can make a run long
    for case in results["latency"]:
        for row in case["rows"]:
            print(f"{case['model']:15} {row['run']:19} mean {row['mean_ms']:8.1f} ms ({row['ratio_mean']:.2f}x)  "
                  f"median {row['median_ms']:8.1f} ms ({row['ratio_median']:.2f}x)  min {row['min_ms']:8.1f} ms "
                  f"({row['ratio_min']:.2f}x)")
    for case in results["accuracy"]:
        for row in case["rows"]:
            print(f"{case['model']:15} {row['run']:19} agreement {row['agreement']:7.3f} %  dmIoU "
                  f"{row['miou_diff']:+.3f}  {'pass' if row['passed'] else 'FAIL'}")
    print(f"{results['seconds']} s")


if __name__ == "__main__":
    main()
