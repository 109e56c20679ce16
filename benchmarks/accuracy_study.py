"""Accuracy study on the synthetic set: the paper's Tables 5-7 in spirit, on data that needs no download.

One teacher, then students trained with CE, KD, RDD (xor / or / and) and RDD with a TFE share of 0 / 10 /
20 %, each with several seeds; prints and writes mean +- std of the best val mIoU. Runs that already
finished (their last.pt reached the last iteration) are reused, so an interrupted study picks up where it
stopped.

    python benchmarks/accuracy_study.py --out runs/accuracy_study --json docs/results/accuracy_study.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from host import device_info

from rdd_deploy.checkpoint import load_checkpoint
from rdd_deploy.distill.config import config_from_dict
from rdd_deploy.distill.trainer import train
from rdd_deploy.quickstart import STUDENT, TEACHER

# name -> distill section; "rdd" is the paper's default (xor, TFE for the first 10 %)
VARIANTS: dict[str, dict[str, Any]] = {
    "ce": {"method": "ce"},
    "kd": {"method": "kd"},
    "rdd (xor, tfe 10%)": {"method": "rdd", "rdd": {"mode": "xor", "tfe_fraction": 0.1}},
    "rdd (or)": {"method": "rdd", "rdd": {"mode": "or", "tfe_fraction": 0.1}},
    "rdd (and)": {"method": "rdd", "rdd": {"mode": "and", "tfe_fraction": 0.1}},
    "rdd (tfe 0%)": {"method": "rdd", "rdd": {"mode": "xor", "tfe_fraction": 0.0}},
    "rdd (tfe 20%)": {"method": "rdd", "rdd": {"mode": "xor", "tfe_fraction": 0.2}},
}


def finished(run_dir: Path, iters: int) -> bool:
    """True when the run's last.pt reached its last iteration."""
    try:
        return load_checkpoint(run_dir / "last.pt")["train_state"]["iteration"] >= iters
    except Exception:
        return False


def run(config: dict[str, Any], run_dir: Path) -> float:
    """Train (or reuse) one run and return its best val mIoU."""
    iters = config["optim"]["iters"]
    if not finished(run_dir, iters):
        train(config_from_dict(config, str(run_dir)), run_dir, resume=(run_dir / "last.pt").is_file(), device="cpu")
    return float(load_checkpoint(run_dir / "best.pt")["meta"]["miou"])


def main() -> None:
    """Train everything, then print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy_study"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-iters", type=int, default=1200)
    parser.add_argument("--student-iters", type=int, default=600)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    started = time.time()

    evaluation = {"every": 100}
    teacher_config = {**TEACHER, "optim": {**TEACHER["optim"], "iters": args.teacher_iters}, "eval": evaluation}
    teacher_miou = run(teacher_config, args.out / "teacher")
    teacher = args.out / "teacher" / "best.pt"

    results: dict[str, list[float]] = {}
    for seed in args.seeds:  # seed-major: a study stopped early still covers every variant
        for name in args.variants:
            config = {**STUDENT, "name": name, "seed": seed, "distill": VARIANTS[name], "eval": evaluation,
                      "optim": {**STUDENT["optim"], "iters": args.student_iters},
                      "teacher": {"checkpoint": str(teacher)}}
            slug = name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "").replace("%", "")
            results.setdefault(name, []).append(run(config, args.out / f"{slug}_seed{seed}"))
            print(f"{name:20s} seed {seed}: {100 * results[name][-1]:.2f}", flush=True)

    summary = {
        "settings": {"data": TEACHER["data"]["dataset"], "teacher": TEACHER["model"], "student": STUDENT["model"],
                     "teacher_iters": args.teacher_iters, "student_iters": args.student_iters, "seeds": args.seeds,
                     "batch_size": STUDENT["optim"]["batch_size"], "lr": STUDENT["optim"]["lr"],
                     "date": time.strftime("%Y-%m-%d"), "device": device_info(),
                     "minutes": round((time.time() - started) / 60, 1)},
        "teacher_miou": teacher_miou,
        "students": {name: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                            "runs": v} for name, v in results.items()},
    }
    print(f"\n| method | val mIoU % (mean ± std over {len(args.seeds)} seeds) |\n|---|---|")
    print(f"| teacher ({TEACHER['model']['name']} ×{TEACHER['model']['width_mult']}) | {100 * teacher_miou:.2f} |")
    for name, row in summary["students"].items():
        print(f"| {name} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
