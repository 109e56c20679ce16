"""What `rdd-deploy report` costs against the `bench --backend all` and `validate` runs it contains, side by side.

    python benchmarks/report_overhead.py --json docs/results/report_overhead.json
    python benchmarks/report_overhead.py --quick       # 256x512, 2 images, 3 rounds: a smoke run

DeepLabV3-R18 with 19 random-init classes (latency does not depend on the weights) is exported at 512x1024 to FP32
and INT8 ONNX; the val images are synthetic renderings cut to 512x1024. Then, alternately (report, parts, report,
parts, ... so that a background load hits both alike):

- report: open every run of both files (as `bench --backend all`), the checkpoint in PyTorch as the reference,
  and `build_report` + `write_report`: one pass over the images (reference once, every run), the interleaved
  timing, the example images, the page;
- parts: what a user would run instead: `bench --backend all` (open every run, `benchmark_all` with the same
  warm-up and rounds) and `validate` of each run (open it, `evaluate` on the same images).

The ratio report / parts is the number the goal is about (at most 2x); the report's extra work is one PyTorch
pass over the images (parity's reference), the example images and the page.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from host import device_info
from random_weights import random_checkpoint

from rdd_deploy.atomic import atomic_write_text
from rdd_deploy.data.cityscapes import INFO as CITYSCAPES
from rdd_deploy.data.synthetic import DEFAULTS, render
from rdd_deploy.export import ExportOptions, export
from rdd_deploy.parity import torch_segmenter
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.evaluate import evaluate
from rdd_deploy.runtime.latency import benchmark_all
from rdd_deploy.runtime.report import build_report, open_runs, write_report
from rdd_deploy.runtime.report.card import checkpoint_facts

SPEC = {"name": "deeplabv3_r18", "aux_head": False, "head_channels": 256, "width_mult": 1.0}


def val_images(count: int, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic val renderings (8 of the 19 class ids) cut to `size`."""
    images = []
    for index in range(count):
        image, label = render(DEFAULTS["seed"], "val", index, max(size))
        images.append((np.ascontiguousarray(image[:size[0], :size[1]]), label[:size[0], :size[1]]))
    return images


def timed(fn: Any) -> float:
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report_once(checkpoint: Path, files: list[Path], samples: list, size: tuple[int, int], args: argparse.Namespace,
                out: Path) -> dict[str, float]:
    start = time.perf_counter()
    runs = open_runs(files, first_is_reference=False)
    reference = torch_segmenter(checkpoint, like=runs[0].segmenter, device="cpu")
    report, strips = build_report(reference, str(checkpoint), runs, lambda: samples, "synthetic 512x1024 cut", 255,
                                  size, args.warmup, args.iters, checkpoint_facts(checkpoint))
    write_report(report, strips, out)
    return {"report_s": time.perf_counter() - start, "runs": len(runs)}


def parts_once(files: list[Path], samples: list, size: tuple[int, int], args: argparse.Namespace) -> dict[str, float]:
    start = time.perf_counter()
    runs = open_runs(files, first_is_reference=False)  # `bench --backend all` opens every run
    benchmark_all([run.segmenter for run in runs], size, 1, args.warmup, args.iters, [run.path for run in runs])
    bench = time.perf_counter() - start
    validate = 0.0
    for run in runs:  # each `validate --backend B --precision-hint H` opens its own session
        validate += timed(lambda: evaluate(Segmenter.from_file(run.path, run.backend, None, run.hint), samples, 255))
    return {"bench_s": bench, "validate_s": validate, "parts_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("docs/results/report_overhead.json"))
    parser.add_argument("--quick", action="store_true", help="256x512, 2 images, 3 rounds")
    parser.add_argument("--images", type=int, default=4, help="val images scored")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10, help="timed rounds of the latency part")
    parser.add_argument("--repeats", type=int, default=2, help="report/parts pairs, alternated")
    args = parser.parse_args()
    size = (256, 512) if args.quick else (512, 1024)
    if args.quick:
        args.images, args.iters, args.repeats = 2, 3, 1
    samples = val_images(args.images, size)
    with tempfile.TemporaryDirectory(prefix="rdd-report-bench-") as scratch:
        folder = Path(scratch)
        checkpoint = random_checkpoint(folder / "r18.pt", SPEC, CITYSCAPES.class_names, size)
        fp32 = export(checkpoint, ExportOptions(out=folder, input_size=size, verify=False))[0]
        int8 = export(checkpoint, ExportOptions(out=folder, input_size=size, precision="int8", verify=False,
                                                calib_data="synthetic:size=256,train=8,val=2", calib_images=8))[-1]
        pairs = []
        for repeat in range(args.repeats):
            report = report_once(checkpoint, [fp32, int8], samples, size, args, folder / f"report{repeat}")
            parts = parts_once([fp32, int8], samples, size, args)
            pairs.append({**report, **parts, "ratio": report["report_s"] / parts["parts_s"]})
            print(json.dumps(pairs[-1]))
    result = {"date": time.strftime("%Y-%m-%d"), "device": device_info(), "model": SPEC, "input_size": list(size),
              "images": args.images, "warmup": args.warmup, "iters": args.iters, "pairs": pairs,
              "median_ratio": statistics.median(pair["ratio"] for pair in pairs)}
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"report / (bench + validate): {result['median_ratio']:.2f}x (median of {len(pairs)}); wrote {args.json}")


if __name__ == "__main__":
    main()
