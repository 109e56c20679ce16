"""One command for a lent GPU machine: CUDA tests, training step, inference latency, accuracy study.

Everything lands in one folder (at most 8 files): device_check.json (every stage's status, settings and
numbers, rewritten after each stage), device_check.log (every command's output), cuda_tests.xml (pytest's
JUnit report) and accuracy_study.json. Stages, each a subprocess with its own time budget, stopped (process
group SIGTERM, then SIGKILL) when it runs past it, and never started past the overall --budget-s:

  env       host.device_info() (GPU, driver, CUDA, cuDNN) and the optional packages found
  tests     `pytest -m cuda`: the CUDA test set (fails when every test skipped on a GPU)
  train     benchmarks/train_step.py at the paper's setting: DeepLabV3-R18 student, DeepLabV3-R101 teacher with
            its aux head (half precision), 19 classes, 512x1024 crops, bf16 autocast, cuDNN benchmark mode,
            CE / KD / RDD-TFE / RDD-TSE interleaved. Batch 4 per GPU is the paper's recipe (global batch 16 on
            four GPUs, configs/cityscapes), timed contiguous and channels_last; then batch 8 in the faster
            layout, and the largest batch that fits, found from the two peak-memory readings (linear in the
            batch) at 90 % of the GPU's memory, one step smaller (x0.85) when it does not fit after all
  latency   benchmarks/torch_latency.py: the four models at 512x1024, batch 1 and 8, fp32 / bf16 / fp16, eager
            then torch.compile, CUDA events, FLOP-bound ratio against the datasheet and a measured matmul
  accuracy  benchmarks/accuracy_study.py --device cuda --quick with what is left of the budget; best effort:
            its failure (a missing flag included) is recorded and does not change the exit status

Exit status 0 when env, tests, train and latency are all "ok", else 1. On the device (torch 2.11, Python 3.12,
no network) the package is used from the working tree (this script puts the repository root on PYTHONPATH; no
pip install). The training path imports pydantic (rdd_deploy.distill.config), which is not installed there, so
the tests and the accuracy study need wheels carried along (onnxslim is only needed by export, carried for
completeness; typing-extensions because pydantic 2.14 needs >= 4.16). Once, here, in the repository root
(/.whl/ is in .gitignore):

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \\
        typing-extensions==4.16.0 onnxslim==0.1.98

then the device tool's `run` with carry [".whl"], timeout_s 560, and the command

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 benchmarks/device_check.py \\
        --out $OUT

A CPU smoke run at a tiny size (small models, 32x64, seconds of work) checks that the script still works:

    python benchmarks/device_check.py --smoke --out /tmp/device_check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
REQUIRED = ("env", "tests", "train", "latency")
STAGES = (*REQUIRED, "accuracy")
# Seconds per stage on a GPU (the 9-minute call: 540 s, --budget-s 510 leaves the rest for start-up and files);
# the accuracy study gets whatever the others leave.
GPU_BUDGETS = {"env": 40, "tests": 100, "train": 170, "latency": 150, "accuracy": math.inf}
# The smoke run checks that the script works, not how fast: no required stage has a limit, so a slow or
# shared CPU cannot fail it; the best-effort accuracy stage gets 5 s so that its timeout path runs too.
SMOKE_BUDGETS = {"env": math.inf, "tests": math.inf, "train": math.inf, "latency": math.inf, "accuracy": 5}
PAPER_TRAIN = ["--student", "deeplabv3_r18", "--teacher", "deeplabv3_r101", "--size", "512x1024", "--classes", "19"]
SMOKE_TRAIN = ["--student", "deeplabv3_mbv2", "--teacher", "deeplabv3_r18", "--size", "32x64", "--classes", "4"]
PAPER_BATCH = 4  # global 16 over the paper's four GPUs (configs/cityscapes/*.yaml: optim.batch_size 16)
SMOKE_LATENCY = ["--models", "deeplabv3_mbv2", "--size", "32x64", "--batches", "1", "--precisions", "fp32", "bf16",
                 "--compile-backend", "eager", "--warmup", "1", "--iters", "2"]
DEVICE_INFO = ("import json, sys; sys.path.insert(0, 'benchmarks'); import host; "
               "print('DEVICE_INFO', json.dumps(host.device_info()))")


class Runner:
    """Runs the stages' commands under one deadline, logging their output to one file."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.log = (out / "device_check.log").open("a", encoding="utf-8")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

    def left(self) -> float:
        """Seconds left before the overall deadline."""
        return self.deadline - time.monotonic()

    def command(self, args: list[str], timeout: float) -> dict[str, Any]:
        """Run one command in its own process group; status ok / failed (exit code) / timed_out."""
        self.log.write(f"\n$ {' '.join(args)}   (timeout {timeout:.0f} s)\n")
        self.log.flush()
        started = time.monotonic()
        process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=None if math.isinf(timeout) else max(timeout, 1))
            status = "ok" if process.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            output, status = stop(process), "timed_out"
        self.log.write(output)
        self.log.flush()
        lines = [line for line in output.splitlines() if line.strip()]
        return {"status": status, "returncode": process.returncode, "seconds": round(time.monotonic() - started, 1),
                "output_tail": lines[-15:]}


def stop(process: subprocess.Popen) -> str:
    """SIGTERM the whole process group (compile workers, data-loader workers too), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
            return process.communicate(timeout=wait)[0]
        except ProcessLookupError:
            return process.communicate()[0]
        except subprocess.TimeoutExpired:
            continue
    return ""


def largest_batch(peaks_gib: dict[int, float], memory_gib: float, fill: float = 0.9) -> int:
    """The largest batch whose peak memory, linear in the batch through two readings, stays under fill * memory."""
    (b1, p1), (b2, p2) = sorted(peaks_gib.items())[:2]
    per_image = (p2 - p1) / (b2 - b1)
    if per_image <= 0:
        raise ValueError(f"peak memory does not grow with the batch: {peaks_gib}")
    return max(b2, int((fill * memory_gib - (p1 - b1 * per_image)) // per_image))


def stage_env(runner: Runner, smoke: bool, timeout: float) -> dict[str, Any]:
    """The machine and the optional packages the other stages need."""
    result = runner.command([sys.executable, "-c", DEVICE_INFO], timeout) | {"packages": {
        name: importlib.util.find_spec(name) is not None for name in ("pydantic", "onnxslim", "pytest")}}
    found = [line for line in result["output_tail"] if line.startswith("DEVICE_INFO ")]
    result["device"] = json.loads(found[-1].split(" ", 1)[1]) if found else None
    if found:
        del result["output_tail"]
    if result["status"] == "ok" and not smoke and not (result["device"] or {}).get("gpu"):
        result["status"] = "failed: torch sees no CUDA GPU (use --smoke on a CPU)"
    return result


def stage_tests(runner: Runner, smoke: bool, timeout: float, out: Path, gpu: bool) -> dict[str, Any]:
    """The CUDA test set; on a GPU every test skipped is a failure (the GPU was not seen)."""
    if importlib.util.find_spec("pydantic") is None:
        return {"status": "skipped: pydantic is not importable; carry the wheels (see this script's docstring)"}
    xml = out / "cuda_tests.xml"
    # A module that fails to import there (a missing package) is reported as an error, not the end of the set.
    result = runner.command([sys.executable, "-m", "pytest", "tests", "-m", "cuda", "-q", "-rs", "-p",
                             "no:cacheprovider", "--continue-on-collection-errors", f"--junitxml={xml}"], timeout)
    if xml.is_file():
        suite = ElementTree.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        result["counts"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        if gpu and result["status"] == "ok" and result["counts"]["skipped"] == result["counts"]["tests"]:
            result["status"] = "failed: every CUDA test skipped on a GPU machine"
    return result


def stage_train(runner: Runner, smoke: bool, timeout: float, work: Path, memory_gib: float | None) -> dict[str, Any]:
    """train_step.py at the paper's batch in both layouts, then batch 8 and the largest batch that fits."""
    until = time.monotonic() + timeout
    device = ["--device", "cpu" if smoke else "cuda"]
    common = [sys.executable, str(BENCHMARKS / "train_step.py"), *device, *(SMOKE_TRAIN if smoke else PAPER_TRAIN),
              "--amp", "bf16", "--teacher-half", "--cudnn-benchmark"]
    rounds = ["--rounds", "1", "--warmup", "0"] if smoke else ["--rounds", "10", "--warmup", "3"]
    batch = 2 if smoke else PAPER_BATCH
    runs: dict[str, Any] = {}

    def attempt(name: str, options: list[str]) -> dict[str, Any] | None:
        path = work / f"{name}.json"
        if until - time.monotonic() < 5:
            runs[name] = {"status": "skipped: stage budget spent"}
            return None
        runs[name] = runner.command([*common, *options, "--json", str(path)], until - time.monotonic())
        runs[name].update(json.loads(path.read_text()) if runs[name]["status"] == "ok" else {})
        return runs[name] if runs[name]["status"] == "ok" else None

    layouts = {"contiguous": [], "channels_last": ["--channels-last"]}
    for layout, flag in layouts.items():
        attempt(f"batch{batch}_{layout}", ["--batch", str(batch), *flag, *rounds])
    done = {layout: runs[f"batch{batch}_{layout}"] for layout in layouts if "step" in runs[f"batch{batch}_{layout}"]}
    status = "ok" if len(done) == len(layouts) else "failed"
    if memory_gib is None or not done:
        return {"status": status, "runs": runs, "largest_batch": "not searched: no GPU" if memory_gib is None else None}
    layout = min(done, key=lambda name: done[name]["step"]["rdd_tse"]["median_ms"])
    second = attempt(f"batch{2 * batch}_{layout}", ["--batch", str(2 * batch), *layouts[layout],
                                                     "--rounds", "2", "--warmup", "1"])
    if second is None:
        return {"status": "failed", "runs": runs, "largest_batch": None}
    biggest = largest_batch({batch: done[layout]["peak_memory_gib"], 2 * batch: second["peak_memory_gib"]},
                            memory_gib)
    for size in (biggest, int(biggest * 0.85)):
        if attempt(f"batch{size}_{layout}", ["--batch", str(size), *layouts[layout], "--rounds", "3", "--warmup",
                                             "1"]) is not None:
            return {"status": status, "runs": runs, "largest_batch": size, "layout": layout}
        if "OutOfMemoryError" not in "\n".join(runs[f"batch{size}_{layout}"].get("output_tail", [])):
            break
    return {"status": "failed", "runs": runs, "largest_batch": None, "layout": layout}


def stage_latency(runner: Runner, smoke: bool, timeout: float, work: Path) -> dict[str, Any]:
    """torch_latency.py within the budget; the rows it wrote count even if it had to be stopped."""
    path = work / "latency.json"
    options = ["--device", "cpu", *SMOKE_LATENCY] if smoke else ["--device", "cuda"]
    result = runner.command([sys.executable, str(BENCHMARKS / "torch_latency.py"), *options, "--budget-s",
                             str(max(timeout - 30, 1)), "--json", str(path)], timeout)
    if path.is_file():
        result.update(json.loads(path.read_text()))
        # Compiled rows are best effort ("where it works"): one that fails is recorded with its error, one that
        # outlasts the budget (a compile can take a minute) is cut off; the eager grid must be complete.
        failed = [row for row in result["rows"] if row["mode"] == "eager" and row["status"].startswith("failed")]
        eager = [row for row in result["rows"] if row["mode"] == "eager" and row["status"] == "ok"]
        settings = result["settings"]
        planned = len(settings["models"]) * len(settings["batches"]) * len(settings["precisions"])
        if result["status"] == "timed_out" and not failed and len(eager) == planned:
            result["status"], result["stopped_by_budget"] = "ok", True
        elif result["status"] == "ok" and failed:
            result["status"] = f"failed: {len(failed)} eager rows failed"
    return result


def stage_accuracy(runner: Runner, smoke: bool, timeout: float, out: Path, work: Path) -> dict[str, Any]:
    """The accuracy study in the remaining time; whatever happens is recorded, nothing is raised."""
    path = out / "accuracy_study.json"
    result = runner.command([sys.executable, str(BENCHMARKS / "accuracy_study.py"), "--device",
                             "cpu" if smoke else "cuda", "--quick", "--out", str(work / "accuracy_runs"), "--json",
                             str(path)], timeout)
    if path.is_file():
        result["study"] = json.loads(path.read_text())
    return result


def summary(report: dict[str, Any]) -> str:
    """Markdown tables of the numbers, printed at the end so the call's output shows them."""
    lines = [f"device: {json.dumps((report['stages'].get('env') or {}).get('device'))}"]
    for name, stage in report["stages"].items():
        lines.append(f"stage {name}: {stage['status']} ({stage.get('seconds', '-')} s)")
    runs = (report["stages"].get("train") or {}).get("runs", {})
    lines += ["", "| run | method | ms/step | images/s | peak GiB | vs KD |", "|---|---|---|---|---|---|"]
    for name, run in runs.items():
        for method, row in run.get("step", {}).items():
            lines.append(f"| {name} | {method} | {row['median_ms']} | {row['images_per_s']} | "
                         f"{row.get('peak_memory_gib', '-')} | {row.get('vs_kd', '-')} |")
    rows = (report["stages"].get("latency") or {}).get("rows", [])
    lines += ["", "| model | precision | batch | mode | median ms | GFLOP/s | of peak |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['precision']} | {row['batch']} | {row['mode']} | "
                     f"{row.get('median_ms', row['status'])} | {row.get('achieved_gflops', '-')} | "
                     f"{row.get('vs_datasheet_peak') or '-'} |")
    return "\n".join(lines)


def main() -> None:
    """Run the chosen stages in order and write the report after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the one folder everything is written to")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models and sizes: checks the script runs")
    parser.add_argument("--budget-s", type=float, help="start nothing after this many seconds (default: 510 on a "
                        "GPU, no limit with --smoke)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    budgets = SMOKE_BUDGETS if args.smoke else GPU_BUDGETS
    args.budget_s = args.budget_s or (math.inf if args.smoke else 510)
    runner = Runner(args.out, args.budget_s)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv, "smoke": args.smoke,
                              "stages": {}}
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp:
        work = Path(tmp)
        stages: dict[str, Callable[[float], dict[str, Any]]] = {
            "env": lambda t: stage_env(runner, args.smoke, t),
            "tests": lambda t: stage_tests(runner, args.smoke, t, args.out, gpu=not args.smoke),
            "train": lambda t: stage_train(runner, args.smoke, t, work, memory()),
            "latency": lambda t: stage_latency(runner, args.smoke, t, work),
            "accuracy": lambda t: stage_accuracy(runner, args.smoke, t, args.out, work),
        }

        def memory() -> float | None:
            gpu = ((report["stages"].get("env") or {}).get("device") or {}).get("gpu_details")
            return gpu["memory_gib"] if gpu else None

        for name in args.stages:
            timeout = min(budgets[name], runner.left())
            started = time.monotonic()
            if timeout < 5:
                result = {"status": f"skipped: {max(runner.left(), 0):.0f} s left of --budget-s {args.budget_s:g}"}
            else:
                print(f"[device_check] {name}: up to {timeout:.0f} s", flush=True)
                result = stages[name](timeout)
            result["seconds"] = round(time.monotonic() - started, 1)
            report["stages"][name] = result
            print(f"[device_check] {name}: {result['status']} in {result['seconds']} s", flush=True)
            (args.out / "device_check.json").write_text(json.dumps(report, indent=2) + "\n")
    text = summary(report)
    runner.log.write("\n" + text + "\n")
    runner.log.close()
    print(text)
    failed = [name for name in REQUIRED if name in report["stages"] and report["stages"][name]["status"] != "ok"]
    if failed:
        print(f"[device_check] not ok: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
