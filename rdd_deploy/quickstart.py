"""`rdd-deploy quickstart`: the whole pipeline on the built-in synthetic set, in minutes on a laptop CPU.

Distil one student from the packaged teacher with CE, KD and RDD, export the best student to ONNX, check its
parity with PyTorch on the validation images and time both, print one summary table, and write the release
report of the exported student (report/report.html: which backend to ship it on here, and why).

The regime is the one distillation is for: a teacher trained long on plenty of data (DeepLabV3-ResNet-18 x0.4,
8000 iterations on 2048 images; it ships with the package, and `--train-teacher` trains it again from
configs/synthetic/teacher.yaml, the same fields as TEACHER below), and a small student (ResNet-18 x0.25,
0.8 M parameters) trained briefly on a small, cheaply labelled set (the first 256 of those images, 35 % of their
objects labelled as the class sharing their shape; 800 iterations), where the teacher's soft labels carry what
the student's few, noisy hard labels do not. With the 4 % of the teacher's labels instead, one run of each
student landed within run-to-run noise of the others (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from rdd_deploy.atomic import atomic_write_text

TEACHER_DATA = "synthetic:size=64,train=2048,val=64"
# The students': the first 256 of those images, labelled cheaply (35 % of objects carry the label of the class that
# shares their shape, against 4 % in the teacher's set), and the same clean validation labels.
DATA = "synthetic:size=64,train=256,val=64,mislabel=35"
# TEACHER's best.pt, made by `rdd-deploy train-teacher configs/synthetic/teacher.yaml`, with its recorded mIoU
# scored on the clean validation labels (docs/benchmarks.md, "Accuracy study on the synthetic set").
PACKAGED_TEACHER = Path(__file__).resolve().parent / "assets" / "synthetic_teacher.pt"
TEACHER: dict[str, Any] = {
    "name": "synthetic_teacher", "seed": 0,
    "data": {"dataset": TEACHER_DATA, "crop_size": [64, 64], "scale_range": [1.0, 1.0], "workers": 0},
    "model": {"name": "deeplabv3_r18", "aux_head": True, "head_channels": 64, "width_mult": 0.4},
    "optim": {"iters": 8000, "batch_size": 8, "lr": 0.05, "weight_decay": 1e-4},
    "distill": {"method": "ce"}, "eval": {"every": 500}, "log_every": 50, "save_every": 500,
}
STUDENT: dict[str, Any] = {
    **TEACHER, "name": "synthetic_student",
    "data": {**TEACHER["data"], "dataset": DATA},
    "model": {"name": "deeplabv3_r18", "head_channels": 32, "width_mult": 0.25},
    "optim": {"iters": 800, "batch_size": 8, "lr": 0.05, "weight_decay": 1e-4},
    "eval": {"every": 800}, "log_every": 20, "save_every": 200,
}
METHODS = ("ce", "kd", "rdd")


def _student_config(method: str, teacher: Path) -> dict[str, Any]:
    return {**STUDENT, "name": f"student_{method}", "distill": {"method": method},
            "teacher": {"checkpoint": str(teacher)}}


def default_run_dir() -> Path:
    """runs/quickstart/<date-time>: a fresh folder each time, so a second quickstart never clobbers the first."""
    return Path("runs") / "quickstart" / datetime.now().strftime("%Y%m%d-%H%M%S")


def quickstart(out: Path | None = None, scale: float = 1.0, console: Console | None = None,
               train_teacher: bool = False) -> dict[str, Any]:
    """Run the pipeline into `out`; `scale` multiplies every iteration count (tests use a tiny fraction)."""
    from rdd_deploy.checkpoint import load_checkpoint
    from rdd_deploy.data import build_dataset
    from rdd_deploy.distill.config import config_from_dict
    from rdd_deploy.distill.trainer import train
    from rdd_deploy.export import ExportOptions, export
    from rdd_deploy.parity import torch_segmenter
    from rdd_deploy.runtime import Segmenter
    from rdd_deploy.runtime.evaluate import dataset_samples
    from rdd_deploy.runtime.latency import benchmark
    from rdd_deploy.runtime.parity import compare
    from rdd_deploy.runtime.report import build_report, open_runs, write_report
    from rdd_deploy.runtime.report.card import checkpoint_facts

    console = console or Console(stderr=True)
    out = Path(out) if out is not None else default_run_dir()
    started = time.perf_counter()

    def scaled(config: dict[str, Any]) -> dict[str, Any]:
        iters = max(2, round(config["optim"]["iters"] * scale))
        return {**config, "optim": {**config["optim"], "iters": iters}, "eval": {"every": iters},
                "save_every": max(1, iters // 3)}

    if train_teacher:
        console.rule(f"[bold]1/5 teacher[/] → {out / 'teacher'}")
        train(config_from_dict(scaled(TEACHER), "quickstart teacher"), out / "teacher", device="cpu")
        teacher = out / "teacher" / "best.pt"
    else:
        teacher = PACKAGED_TEACHER
        console.rule(f"[bold]1/5 teacher[/]: the packaged one, {teacher}")
    rows: list[dict[str, Any]] = [{"run": "teacher", "method": "ce", "checkpoint": teacher}]
    for method in METHODS:
        console.rule(f"[bold]2/5 student, {method}[/] → {out / f'student_{method}'}")
        config = config_from_dict(scaled(_student_config(method, teacher)), f"quickstart student ({method})")
        train(config, out / f"student_{method}", device="cpu")
        rows.append({"run": f"student_{method}", "method": method, "checkpoint": out / f"student_{method}" / "best.pt"})
    for row in rows:
        checkpoint = load_checkpoint(row["checkpoint"])
        row["miou"] = checkpoint["meta"]["miou"]
        row["params_m"] = sum(v.numel() for k, v in checkpoint["model"].items() if "running" not in k
                              and "num_batches" not in k) / 1e6
        spec = checkpoint["model_spec"]
        row["model"] = f"{spec['name']} ×{spec['width_mult']:g}, head {spec['head_channels']}"

    best = max(rows[1:], key=lambda row: row["miou"])
    console.rule(f"[bold]3/5 export[/] the best student ({best['method']}) → {out / 'export'}")
    # Verified on the synthetic validation images: the sample photos need scikit-image, a [dev] extra.
    onnx_path = export(best["checkpoint"], ExportOptions(out=out / "export", input_size=(64, 64),
                                                         calib_data=DATA))[0]

    console.rule("[bold]4/5 parity and latency[/] of the ONNX model against PyTorch")
    exported = Segmenter.from_file(onnx_path)
    reference = torch_segmenter(best["checkpoint"], like=exported, device="cpu")
    val = build_dataset(DATA, "val")
    parity = compare(reference, exported, dataset_samples(val), ignore_index=val.info.ignore_index)
    latency = {name: benchmark(segmenter, (64, 64), warmup=10, iters=100, model_path=path).to_dict()
               for name, segmenter, path in (("pytorch", reference, None), ("onnxruntime", exported, onnx_path))}

    console.rule(f"[bold]5/5 release report[/] of the ONNX model on every backend here → {out / 'report'}")
    runs = open_runs([onnx_path], first_is_reference=False)
    report, strips = build_report(reference, str(best["checkpoint"]), runs, lambda: dataset_samples(val), DATA,
                                  val.info.ignore_index, (64, 64), warmup=10, iters=100,
                                  checkpoint=checkpoint_facts(best["checkpoint"]))
    write_report(report, strips, out / "report")

    summary = {
        "run_dir": str(out), "data": DATA, "seconds": round(time.perf_counter() - started, 1),
        "runs": [{k: (str(v) if isinstance(v, Path) else v) for k, v in row.items()} for row in rows],
        "best_student": best["run"], "onnx": str(onnx_path), "parity": parity.to_dict(), "latency": latency,
        "report": str(out / "report" / "report.html"), "recommendation": report["recommendation"]["name"],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summary_tables(summary: dict[str, Any]) -> Group:
    """Two tables: mIoU per run, then the exported student's parity with PyTorch and its latency."""
    runs = Table(title=f"quickstart on {summary['data']} · {summary['seconds']:.0f} s · {summary['run_dir']}",
                 title_justify="left")
    for column in ("run", "model", "params (M)", "val mIoU %"):
        runs.add_column(column, justify="left" if column in ("run", "model") else "right")
    for run in summary["runs"]:
        name = f"{run['run']} → exported" if run["run"] == summary["best_student"] else run["run"]
        runs.add_row(name, run["model"], f"{run['params_m']:.2f}", f"{100 * run['miou']:.2f}")
    parity, latency = summary["parity"], summary["latency"]
    torch_ms = latency["pytorch"]["end_to_end"]["mean_ms"]
    onnx_ms = latency["onnxruntime"]["end_to_end"]["mean_ms"]
    deploy = Table(title=f"{Path(summary['onnx']).name} vs PyTorch on {parity['images']} val images, CPU, "
                         "end to end (uint8 image to mask)", title_justify="left")
    for column in ("agreement %", "max |Δlogit|", "mIoU Δ", "PyTorch ms", "ONNX Runtime ms", "speed-up"):
        deploy.add_column(column, justify="right")
    deploy.add_row(f"{parity['agreement']:.3f}", f"{parity['max_abs_error']:.1e}", f"{parity['miou_diff']:+.3f}",
                   f"{torch_ms:.2f}", f"{onnx_ms:.2f}", f"{torch_ms / onnx_ms:.2f}x")
    return Group(runs, deploy)
