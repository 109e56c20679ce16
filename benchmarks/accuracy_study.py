"""Paired accuracy study on the synthetic set: the paper's Tables 5-8 in spirit, with no download.

Every method trains the same student from the same seed (same initial weights, same data order) against the
same teacher, so a method's result on seed s is compared with KD's and CE's on seed s: the study reports
mean ± std per method and the paired difference to KD and to CE with a 95 % t-interval over the seeds.
Results are written to the JSON after every run, and runs whose last.pt reached their last iteration are
reused, so a study stopped at any point continues where it stopped.

    python benchmarks/accuracy_study.py --json docs/results/accuracy_study.json \
        --figure docs/figures/accuracy_study.png              # 5 seeds, every variant (CPU: about an hour)
    python benchmarks/accuracy_study.py --quick               # 2 seeds, 5 variants, shorter runs
    python benchmarks/accuracy_study.py --device cuda         # larger images and budget, one GPU
    python benchmarks/accuracy_study.py --mislabel 4          # the students' labels as noisy as the teacher's

On the CPU the study uses the teacher that ships with the package (rdd_deploy/assets, made by
`rdd-deploy train-teacher configs/synthetic/teacher.yaml`); `--device cuda` trains its own at its image size.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from host import device_info

from rdd_deploy.atomic import atomic_write_text
from rdd_deploy.checkpoint import load_checkpoint
from rdd_deploy.data import build_dataset
from rdd_deploy.data.synthetic import majority_floor, parse_options
from rdd_deploy.quickstart import DATA, PACKAGED_TEACHER, STUDENT, TEACHER, TEACHER_DATA

# name -> distill section. "rdd" is the paper's default: xor, TFE for the first 10 %, threshold 0.7.
RDD = {"method": "rdd", "rdd": {"mode": "xor", "tfe_fraction": 0.1, "threshold": 0.7}}


def _rdd(**changes: Any) -> dict[str, Any]:
    variant = copy.deepcopy(RDD)
    variant["rdd"].update(changes)
    return variant


VARIANTS: dict[str, dict[str, Any]] = {
    "ce": {"method": "ce"},
    "kd": {"method": "kd"},
    "rdd": RDD,
    "rdd official": _rdd(preset="official"),
    "at": {"method": "at"},
    "at+rdd": {**_rdd(), "method": "at+rdd"},
    "rdd or": _rdd(mode="or"),
    "rdd and": _rdd(mode="and"),
    "rdd tfe 0%": _rdd(tfe_fraction=0.0),
    "rdd tfe 20%": _rdd(tfe_fraction=0.2),
    "rdd t=0.6": _rdd(threshold=0.6),
    "rdd t=0.8": _rdd(threshold=0.8),
    # ours, not the paper's: the official preset's first two differences, one at a time on the paper preset
    "rdd target conf": _rdd(confidence="target"),
    "rdd ohem": _rdd(min_kept="ohem"),
    "rdd tse mean selected": _rdd(tse_mean="selected"),
}
# The paper's tables, each a list of variants that differ in one thing.
TABLES = {
    "methods (Tables 2 and 8)": ["ce", "kd", "rdd", "rdd official", "at", "at+rdd"],
    "TSE combination (Table 5)": ["rdd", "rdd or", "rdd and"],
    "TFE share (Table 6)": ["rdd tfe 0%", "rdd", "rdd tfe 20%"],
    "threshold (Table 7)": ["rdd t=0.6", "rdd", "rdd t=0.8"],
    "paper vs official preset, one difference at a time (ours)": ["rdd", "rdd target conf", "rdd ohem",
                                                                   "rdd tse mean selected", "rdd official"],
}
QUICK_VARIANTS = ["ce", "kd", "rdd", "rdd official", "at+rdd"]
# OHEM's min_kept in the official code is 100000 pixels of a 2 x 512 x 1024 GPU batch: the same 9.5 % here.
OFFICIAL_KEPT_SHARE = 100_000 / (2 * 512 * 1024)
# scores compared between variants, each a fraction per run (score_run)
METRICS = ("miou", "boundary_miou", "interior_miou")
# image size, teacher iterations (None: the packaged teacher), student iterations, runs at once
BUDGETS = {
    "cpu": {"size": 64, "teacher_iters": None, "student_iters": STUDENT["optim"]["iters"], "jobs": 2},
    "cuda": {"size": 128, "teacher_iters": 8000, "student_iters": 1600, "jobs": 6},
}


def with_settings(data: str, **changes: int | None) -> str:
    """The same synthetic set with some settings changed (None: left as it is), e.g. another image size."""
    settings = {**parse_options(data.partition(":")[2]),
                **{key: value for key, value in changes.items() if value is not None}}
    return "synthetic:" + ",".join(f"{key}={value}" for key, value in settings.items())


def slug(name: str) -> str:
    """A folder name for a variant."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def finished(run_dir: Path, config: dict[str, Any]) -> bool:
    """True when the run's last.pt reached its last iteration; a run of another recipe there is an error."""
    from rdd_deploy.distill.config import config_from_dict, recipe_changes

    if not (run_dir / "last.pt").is_file():
        return False
    state = load_checkpoint(run_dir / "last.pt")["train_state"]
    changed = recipe_changes(state["config"], config_from_dict(config))
    if changed:
        raise SystemExit(f"{run_dir} holds a run of another recipe ({'; '.join(changed)}); remove it or pass "
                         "another --out")
    return state["iteration"] >= config["optim"]["iters"]


def train_run(config: dict[str, Any], run_dir: Path, device: str, threads: int) -> dict[str, Any]:
    """Train (or reuse) one run in this process and return its scores (`score_run`)."""
    import torch

    from rdd_deploy.distill.config import config_from_dict
    from rdd_deploy.distill.trainer import train

    torch.set_num_threads(threads)
    if not finished(run_dir, config):
        # log.jsonl keeps the share of pixels TSE-RDD selects, read back by score_run
        train(config_from_dict(config, str(run_dir)), run_dir, resume=(run_dir / "last.pt").is_file(),
              device=device, log=True)
    return score_run(run_dir, config["data"]["dataset"], device)


def score_run(run_dir: Path, data: str, device: str) -> dict[str, Any]:
    """The final student's val mIoU, Boundary IoU and interior IoU (mean and per class), and the mean share of
    labelled pixels TSE-RDD selected over its training (None for methods without TSE)."""
    from rdd_deploy.checkpoint import meta_normalization, model_from_checkpoint
    from rdd_deploy.distill.evaluate import predict_probabilities
    from rdd_deploy.runtime.boundary import BoundaryIoU
    from rdd_deploy.runtime.metrics import SegmentationScores, by_name

    model, meta = model_from_checkpoint(run_dir / "last.pt")
    channel_order, mean, std = meta_normalization(meta)
    dataset = build_dataset(data, "val", mean=mean, std=std, channel_order=channel_order)
    names, ignore = dataset.info.class_names, dataset.info.ignore_index
    scores = SegmentationScores(len(names), ignore, names)
    interior = BoundaryIoU(len(names), ignore, region="interior")
    model.to(device)
    for index in range(len(dataset)):
        image, label = dataset[index]
        pred = predict_probabilities(model, image[None].to(device)).argmax(dim=1)[0].cpu().numpy()
        scores.update(pred, label.numpy())
        interior.update(pred, label.numpy())
    result = scores.summary()
    if not math.isclose(result["miou"], meta["miou"], abs_tol=1e-9):  # the trainer's own validation, same images
        raise SystemExit(f"{run_dir}: re-scored mIoU {result['miou']} differs from the recorded {meta['miou']}")
    inside = interior.compute()
    selected = [record["selected"] for record in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
                if record.get("stage") == "tse" and "selected" in record]
    return {**result, "interior_miou": inside["mean"], "interior_iou": by_name(names, inside["per_class"]),
            "tse_selected": statistics.mean(selected) if selected else None}


def student_config(name: str, seed: int, teacher: Path, data: str, size: int, iters: int) -> dict[str, Any]:
    """The student recipe with one variant's distill section; evaluated once, at the end."""
    distill = copy.deepcopy(VARIANTS[name])
    rdd = distill.get("rdd", {})
    if rdd.get("preset") == "official" or rdd.get("min_kept") == "ohem":
        rdd["min_kept"] = round(OFFICIAL_KEPT_SHARE * STUDENT["optim"]["batch_size"] * size * size)
    return {**STUDENT, "name": name, "seed": seed, "distill": distill, "teacher": {"checkpoint": str(teacher)},
            "data": {**STUDENT["data"], "dataset": data, "crop_size": [size, size]},
            "optim": {**STUDENT["optim"], "iters": iters}, "eval": {"every": iters}, "save_every": iters}


def t_interval(differences: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95 % t-interval of paired differences (no bounds with fewer than two)."""
    from scipy import stats

    mean = statistics.mean(differences)
    if len(differences) < 2:
        return mean, None, None
    half = stats.t.ppf(0.975, len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
    return mean, mean - half, mean + half


def paired(by_seed: dict[int, dict[str, Any]], reference: dict[int, dict[str, Any]],
           value: Callable[[dict[str, Any]], float | None]) -> dict[str, Any] | None:
    """Mean and 95 % interval of value(run) - value(reference run) over the seeds both have (None if none)."""
    pairs = [(value(by_seed[s]), value(reference[s])) for s in sorted(set(by_seed) & set(reference))]
    differences = [a - b for a, b in pairs if a is not None and b is not None]
    if not differences:
        return None
    mean, low, high = t_interval(differences)
    return {"mean": mean, "ci95": [low, high], "seeds": len(differences)}


def summarise(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per variant: mIoU mean, std and runs, and paired differences to KD and CE over the seeds both have; under
    `metrics`, the same for Boundary and interior IoU; under `per_class`, each class's IoU and Boundary IoU
    difference to KD; `tse_selected`, the mean share of pixels TSE-RDD selected."""
    summary = {}
    for name, by_seed in runs.items():
        seeds = sorted(by_seed)
        row: dict[str, Any] = {"runs": {str(s): by_seed[s] for s in seeds}, "metrics": {}, "per_class": {}}
        base = name.split("+")[0] if name.endswith("+rdd") else None  # RDD on top of another distiller
        references = [r for r in ("kd", "ce", *([base] if base else [])) if r != name and r in runs]
        for metric in METRICS:
            values = [by_seed[s][metric] for s in seeds]
            row["metrics"][metric] = {"mean": statistics.mean(values),
                                      "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            for reference in references:
                row["metrics"][metric][f"vs_{reference}"] = paired(by_seed, runs[reference], lambda r: r[metric])
        row.update({key: row["metrics"]["miou"][key] for key in row["metrics"]["miou"]})  # mIoU at the top
        if "kd" in references:
            for per_class in ("iou", "boundary_iou"):
                classes = by_seed[seeds[0]][per_class]
                row["per_class"][per_class] = {c: paired(by_seed, runs["kd"], lambda r: r[per_class][c])
                                               for c in classes}
        shares = [by_seed[s]["tse_selected"] for s in seeds if by_seed[s]["tse_selected"] is not None]
        row["tse_selected"] = statistics.mean(shares) if shares else None
        summary[name] = row
    return summary


def seeds_needed(paired_sd: float, half_width: float) -> int:
    """The fewest paired seeds whose 95 % t-interval half-width, at this SD of the differences, is <= half_width."""
    from scipy import stats

    n = 2
    while stats.t.ppf(0.975, n - 1) * paired_sd / math.sqrt(n) > half_width:
        n += 1
    return n


def plan_seeds(previous: dict[str, Any], half_width: float, variant: str = "rdd") -> dict[str, Any]:
    """From an earlier study's JSON: the SD of `variant` - KD over its seeds and the seeds a 95 % interval no wider
    than +-half_width (mIoU points) needs at that SD."""
    def miou(run: float | dict[str, Any]) -> float:  # earlier studies stored the mIoU alone
        return run["miou"] if isinstance(run, dict) else run

    runs, kd = previous["students"][variant]["runs"], previous["students"]["kd"]["runs"]
    differences = [100 * (miou(runs[s]) - miou(kd[s])) for s in sorted(set(runs) & set(kd), key=int)]
    sd = statistics.stdev(differences)
    return {"variant": variant, "pilot_seeds": len(differences), "pilot_mean": statistics.mean(differences),
            "paired_sd": sd, "half_width": half_width, "seeds_needed": seeds_needed(sd, half_width)}


def markdown(result: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, in mIoU points."""
    students, floor = result["students"], result["majority_floor"]

    def diff(row: dict[str, Any], key: str) -> str:
        d = row.get(key)
        if d is None:
            return "-"
        if d["ci95"][0] is None:
            return f"{100 * d['mean']:+.2f}"
        return f"{100 * d['mean']:+.2f} [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"

    lines = [f"teacher {100 * result['teacher_miou']:.2f} · majority-class floor {100 * floor:.2f}", ""]
    for title, names in TABLES.items():
        if not any(name in students for name in names):
            continue
        lines += [f"**{title}**", "", "| student | mIoU % mean ± std | Δ vs KD [95 % CI] | Δ vs CE [95 % CI] |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {name} | {100 * students[name]['mean']:.2f} ± {100 * students[name]['std']:.2f} | "
                  f"{diff(students[name], 'vs_kd')} | {diff(students[name], 'vs_ce')} |"
                  for name in names if name in students]
        lines.append("")
    lines += ["**where the difference lives: paired Δ vs KD, points [95 % CI]**", "",
              "| student | Δ mIoU | Δ Boundary IoU | Δ interior IoU | TSE selects (share of labelled pixels) |",
              "|---|---:|---:|---:|---:|"]
    for name, row in students.items():
        if name == "kd" or "vs_kd" not in row["metrics"]["miou"]:
            continue
        share = "-" if row["tse_selected"] is None else f"{100 * row['tse_selected']:.1f} %"
        lines.append(f"| {name} | " + " | ".join(diff(row["metrics"][m], "vs_kd") for m in METRICS) + f" | {share} |")
    for name, row in students.items():
        if row["per_class"]:
            lines += ["", f"**{name} - KD per class, points [95 % CI]**", "", "| class | Δ IoU | Δ Boundary IoU |",
                      "|---|---:|---:|"]
            lines += [f"| {c} | {diff(row['per_class']['iou'], c)} | {diff(row['per_class']['boundary_iou'], c)} |"
                      for c in row["per_class"]["iou"]]
    return "\n".join(lines)


def figure(result: dict[str, Any], path: Path) -> None:
    """Bars of each variant's paired difference to KD and to CE, with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in VARIANTS if n in result["students"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 1.5), sharey=True)
    for axis, reference in zip(axes, ("kd", "ce")):
        rows = [(n, result["students"][n].get(f"vs_{reference}")) for n in names]
        for y, (name, d) in enumerate(rows):
            if d is None:
                continue
            mean = 100 * d["mean"]
            if d["ci95"][0] is None:
                axis.barh(y, mean, color="tab:gray", alpha=0.7)
                continue
            low, high = (100 * v for v in d["ci95"])
            colour = "tab:green" if low > 0 else "tab:red" if high < 0 else "tab:gray"
            axis.barh(y, mean, color=colour, alpha=0.7)
            axis.errorbar(mean, y, xerr=[[mean - low], [high - mean]], color="black", capsize=3)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_title(f"paired Δ mIoU vs {reference.upper()} (points, 95 % CI)")
        axis.set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    settings = result["settings"]
    fig.suptitle(f"synthetic set, {len(settings['seeds'])} seeds, teacher {100 * result['teacher_miou']:.1f} %, "
                 f"{settings['device_kind']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Train every (variant, seed) pair, then print and write the tables, the JSON and the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy_study"))
    parser.add_argument("--json", type=Path, help="results file, rewritten after every run")
    parser.add_argument("--figure", type=Path, help="PNG of the paired differences")
    parser.add_argument("--device", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--student-iters", type=int, help="default: the regime's (CPU) or the cuda budget's")
    parser.add_argument("--jobs", type=int, help="runs trained at once (default: the device budget's)")
    parser.add_argument("--teacher", type=Path, help="teacher checkpoint (default: the packaged one on CPU)")
    parser.add_argument("--mislabel", type=int, help="percentage of the students' training objects labelled as "
                        "the class sharing their shape (default: the regime's)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 5 variants, a quarter of the iterations")
    parser.add_argument("--plan-from", type=Path, help="print the seeds that an earlier study's spread of RDD - KD "
                        "asks for, for an interval of +-HALF_WIDTH points, and exit")
    parser.add_argument("--half-width", type=float, default=1.0)
    args = parser.parse_args()
    if args.plan_from:
        print(json.dumps(plan_seeds(json.loads(args.plan_from.read_text()), args.half_width), indent=2))
        return
    budget = BUDGETS[args.device]
    seeds, variants = (args.seeds[:2], [v for v in args.variants if v in QUICK_VARIANTS]) if args.quick \
        else (args.seeds, args.variants)
    iters = args.student_iters or (budget["student_iters"] // (4 if args.quick else 1))
    jobs = args.jobs or budget["jobs"]
    size = budget["size"]
    data = with_settings(DATA, size=size, mislabel=args.mislabel)
    started = time.time()

    teacher = args.teacher
    if teacher is None and budget["teacher_iters"] is None:
        teacher = PACKAGED_TEACHER
    if teacher is None:  # this budget's images differ from the packaged teacher's: train one here
        teacher_iters = budget["teacher_iters"] // (4 if args.quick else 1)
        config = {**TEACHER, "data": {**TEACHER["data"], "dataset": with_settings(TEACHER_DATA, size=size),
                                      "crop_size": [size, size]},
                  "optim": {**TEACHER["optim"], "iters": teacher_iters}, "eval": {"every": teacher_iters},
                  "save_every": teacher_iters}
        train_run(config, args.out / "teacher", args.device, os.cpu_count() or 1)
        teacher = args.out / "teacher" / "last.pt"
    teacher_miou = float(load_checkpoint(teacher)["meta"]["miou"])

    pairs = [(seed, name) for seed in seeds for name in variants]  # seed-major: a partial study stays paired
    threads = max(1, (os.cpu_count() or 1) // jobs) if args.device == "cpu" else 1
    settings = {"data": data, "teacher": str(teacher), "teacher_model": TEACHER["model"],
                "student_model": STUDENT["model"], "student_iters": iters, "seeds": seeds, "variants": variants,
                "batch_size": STUDENT["optim"]["batch_size"], "lr": STUDENT["optim"]["lr"], "jobs": jobs,
                "threads_per_run": threads, "device_kind": args.device, "date": time.strftime("%Y-%m-%d"),
                "device": device_info()}
    floor = majority_floor(build_dataset(data, "val"))
    configs = {(seed, name): student_config(name, seed, teacher, data, size, iters) for seed, name in pairs}
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_run, configs[pair], args.out / f"{slug(pair[1])}_seed{pair[0]}", args.device,
                               threads): pair for pair in pairs}
        for future, (seed, name) in futures.items():  # in submission order, so the JSON grows seed by seed
            runs.setdefault(name, {})[seed] = future.result()
            scores = runs[name][seed]
            print(f"{name:14s} seed {seed}: mIoU {100 * scores['miou']:.2f}  boundary "
                  f"{100 * scores['boundary_miou']:.2f}  interior {100 * scores['interior_miou']:.2f}", flush=True)
            result = {"settings": {**settings, "minutes_this_call": round((time.time() - started) / 60, 1)},
                      "teacher_miou": teacher_miou, "majority_floor": floor,
                      "students": summarise({n: runs[n] for n in variants if n in runs})}
            if args.json:
                atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print("\n" + markdown(result))
    if args.figure:
        figure(result, args.figure)

if __name__ == "__main__":
    main()
