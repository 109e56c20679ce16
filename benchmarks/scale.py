"""How training cost grows with input size and batch, its peak memory, and DDP throughput on 1 vs 2 processes.

    python benchmarks/scale.py --json docs/results/scale.json
    python benchmarks/scale.py --quick                           # two grid cells, short DDP runs

Grid: one RDD-TSE training step of the paper's pair (DeepLabV3-R18 student, DeepLabV3-R101 teacher with its
aux head, 19 classes) per (size, batch) cell. Each cell is its own `benchmarks/train_step.py` process, so its
peak resident memory is that cell's alone. Batches start at 2: DeepLabV3's image-pooling BatchNorm
sees one value per channel and image, and cannot train on a batch of one.

DDP: the real trainer (`rdd-deploy distill`, quickstart teacher and student, RDD, synthetic set) for a fixed
number of iterations with 1 process x 1 thread, 1 process x 2 threads and 2 processes x 1 thread (torchrun,
gloo), the last with and without synchronised BatchNorm. Throughput is images per second between the
warm-up iteration and the last, from the run's log, so start-up, data generation and evaluation are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from host import device_info
from random_weights import random_checkpoint

HERE = Path(__file__).resolve().parent
GRID = (((64, 128), (2, 4, 8)), ((128, 256), (2, 4, 8)), ((256, 512), (2, 4)))
QUICK_GRID = (((64, 128), (2,)),)
# name -> (processes, threads per process, synchronised BatchNorm)
LAYOUTS = {"1 process x 1 thread": (1, 1, True), "1 process x 2 threads": (1, 2, True),
           "2 processes x 1 thread": (2, 1, True), "2 processes x 1 thread, no sync BN": (2, 1, False)}


def grid_cell(size: tuple[int, int], batch: int, rounds: int) -> dict[str, Any]:
    """Median step time and peak RSS of one RDD-TSE training step at (size, batch), in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        subprocess.run([sys.executable, str(HERE / "train_step.py"), "--size", f"{size[0]}x{size[1]}",
                        "--batch", str(batch), "--rounds", str(rounds), "--warmup", "1", "--methods", "rdd_tse",
                        "--json", str(out)], check=True, capture_output=True, text=True)
        result = json.loads(out.read_text())
    step_ms = result["step"]["rdd_tse"]["median_ms"]
    return {"size": list(size), "batch": batch, "step_ms": step_ms, "ms_per_image": round(step_ms / batch, 1),
            "images_per_s": round(1e3 * batch / step_ms, 3), "peak_rss_gib": result["peak_rss_gib"]}


def ddp_run(layout: str, config: dict[str, Any], out: Path, iters: int, batch: int) -> dict[str, Any]:
    """Train with one process layout and read the steady-state throughput from its log."""
    processes, threads, sync_bn = LAYOUTS[layout]
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump({**config, "sync_bn": sync_bn}))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "rdd_deploy", "distill", str(path), "--out", str(out), "--device", "cpu"]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", str(processes), *command[1:]]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    steps = {r["iter"]: r["time"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
             if "loss" in r}
    first, last = min(steps), max(steps)
    seconds = steps[last] - steps[first]
    return {"layout": layout, "processes": processes, "threads_per_process": threads, "sync_bn": sync_bn,
            "iters": iters,
            "batch": batch, "images_per_s": round(batch * (last - first) / seconds, 2),
            "ms_per_iter": round(1e3 * seconds / (last - first), 1), "wall_s": round(wall, 1)}


def ddp_scaling(iters: int, batch: int) -> list[dict[str, Any]]:
    """Throughput of the same RDD run under every process layout."""
    from rdd_deploy.quickstart import DATA, STUDENT, TEACHER

    # the quickstart teacher with random weights: throughput does not depend on them
    teacher = {key: TEACHER["model"][key] for key in ("name", "aux_head", "head_channels", "width_mult")}
    classes = [str(i) for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher_path = random_checkpoint(work / "t.pt", teacher, classes, (64, 64))
        config = {**STUDENT, "name": "ddp_scaling", "data": {**STUDENT["data"], "dataset": DATA},
                  "optim": {**STUDENT["optim"], "iters": iters, "batch_size": batch},
                  "eval": {"every": 10 * iters}, "log_every": 1, "save_every": 10 * iters,
                  "distill": {"method": "rdd"}, "teacher": {"checkpoint": str(teacher_path)}}
        return [ddp_run(layout, config, work / f"run{i}", iters, batch) for i, layout in enumerate(LAYOUTS)]


def main() -> None:
    """Run the grid and the DDP comparison, print both tables and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("docs/results/scale.json"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ddp-iters", type=int, default=40)
    parser.add_argument("--ddp-batch", type=int, default=16)
    args = parser.parse_args()
    grid, ddp_iters = (QUICK_GRID, 6) if args.quick else (GRID, args.ddp_iters)
    started = time.perf_counter()
    cells = []
    for size, batches in grid:
        for batch in batches:
            cells.append(grid_cell(size, batch, 2 if args.quick else args.rounds))
            print(f"{size[0]}x{size[1]} batch {batch}: {cells[-1]['step_ms']:.0f} ms/step, "
                  f"{cells[-1]['ms_per_image']:.0f} ms/image, peak RSS {cells[-1]['peak_rss_gib']:.2f} GiB",
                  flush=True)
    ddp = ddp_scaling(ddp_iters, args.ddp_batch)
    base = ddp[0]["images_per_s"]
    for row in ddp:
        row["speed_up"] = round(row["images_per_s"] / base, 2)
        print(f"{row['layout']:24s} {row['images_per_s']:7.2f} images/s  {row['speed_up']:.2f}x", flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "device": device_info(), "command": " ".join(sys.argv),
              "grid": cells, "ddp": ddp, "seconds": round(time.perf_counter() - started, 1)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
