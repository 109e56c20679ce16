"""Time per training iteration for CE, KD, RDD-TFE and RDD-TSE with the same student, teacher and batch.

The methods run round-robin in one process (one iteration of each per round), so drift in
machine load hits all of them alike; the ratio to KD is what RDD costs. The loss alone
(forward + backward of the criterion on fixed logits) is timed too, since at small sizes
the networks dominate and hide it. On CUDA the peak memory (torch.cuda.max_memory_allocated) is read per
method too, the statistics being reset before each of its steps.

    python benchmarks/train_step.py --size 128x256 --batch 4 --rounds 8            # CPU
    python benchmarks/train_step.py --device cuda --size 512x1024 --batch 8 --amp bf16 \
        --channels-last --teacher-half --cudnn-benchmark --rounds 30               # GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from host import device_info

from rdd_deploy.distill.losses import RDDLoss, kd_loss, task_loss
from rdd_deploy.models import build_model

METHODS = ("ce", "kd", "rdd_tfe", "rdd_tse")


def make_loss(method: str, total_iters: int) -> Callable[[dict, dict, torch.Tensor], torch.Tensor]:
    """The loss of one method as a function of (student outputs, teacher outputs, labels)."""
    if method == "ce":
        return lambda s, t, y: task_loss(s["out"], y)
    if method == "kd":
        return lambda s, t, y: task_loss(s["out"], y) + kd_loss(s["out"], t["out"])
    criterion = RDDLoss(total_iters=total_iters)
    iteration = 0 if method == "rdd_tfe" else total_iters - 1
    return lambda s, t, y: criterion(s, t, y, iteration).total


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    """Run the benchmark and print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="deeplabv3_r18")
    parser.add_argument("--teacher", default="deeplabv3_r101")
    parser.add_argument("--size", default="128x256")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--teacher-half", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN pick the fastest convolution algorithms for these fixed shapes")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="a subset, e.g. one method for a peak-memory reading of that method alone")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    methods = tuple(args.methods)

    torch.manual_seed(0)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    height, width = (int(v) for v in args.size.split("x"))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    student = build_model(args.student, args.classes).to(device, memory_format=memory_format).train()
    teacher = build_model(args.teacher, args.classes, aux_head=True).to(device, memory_format=memory_format).eval()
    if args.teacher_half:
        teacher = teacher.half() if device.type == "cuda" else teacher.bfloat16()
    teacher.requires_grad_(False)
    optimizer = torch.optim.SGD(student.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(args.batch, 3, height, width, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, args.classes, (args.batch, height, width), device=device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    losses = {method: make_loss(method, 1000) for method in METHODS}

    def step(method: str) -> None:
        t_out = None
        if method != "ce":  # plain training runs no teacher: vs_ce is the whole price of distilling
            with torch.no_grad():
                t_out = teacher(images.to(next(teacher.parameters()).dtype))
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            s_out = student(images)
        loss = losses[method](s_out, t_out, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    with torch.no_grad():
        fixed_student = {k: v.detach().float() for k, v in student(images).items()}
        fixed_teacher = {k: v.detach().float() for k, v in teacher(images.to(next(teacher.parameters()).dtype)).items()}

    def loss_only(method: str) -> None:
        logits = {"out": fixed_student["out"].clone().requires_grad_(True)}
        losses[method](logits, fixed_teacher, labels).backward()

    timings: dict[str, dict[str, list[float]]] = {"step": {m: [] for m in methods}, "loss": {m: [] for m in methods}}
    step_peaks = dict.fromkeys(methods, 0)
    overall_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    for round_index in range(args.warmup + args.rounds):
        for kind, function in (("step", step), ("loss", loss_only)):
            for method in methods:
                synchronize(device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                function(method)
                synchronize(device)
                if round_index >= args.warmup:
                    timings[kind][method].append((time.perf_counter() - start) * 1e3)
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device)
                    overall_peak = max(overall_peak, peak)
                    if kind == "step":
                        step_peaks[method] = max(step_peaks[method], peak)
    # On CPU the process's peak resident set (models, activations, allocator caches) is what a user must have.
    peak_memory_gib = overall_peak / 2**30 if device.type == "cuda" else None
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    result = {
        "date": time.strftime("%Y-%m-%d"), "device": device_info(), "settings": {**vars(args), "json": None},
        "peak_memory_gib": peak_memory_gib,
        "peak_rss_gib": round(peak_rss_gib, 3),
    }
    for kind in ("step", "loss"):
        medians = {m: statistics.median(timings[kind][m]) for m in methods}
        result[kind] = {m: {"median_ms": round(medians[m], 3), "min_ms": round(min(timings[kind][m]), 3),
                            **{f"vs_{base}": round(medians[m] / medians[base], 4) for base in ("kd", "ce")
                               if base in medians}}
                        for m in methods}
    for method, row in result["step"].items():
        # 3 significant digits, not 2 decimals: those are 2 % off at 0.22 images/s on a busy CPU
        row["images_per_s"] = float(f"{args.batch * 1e3 / statistics.median(timings['step'][method]):.3g}")
        if device.type == "cuda":
            row["peak_memory_gib"] = round(step_peaks[method] / 2**30, 3)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
