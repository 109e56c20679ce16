"""The `rdd-deploy` command line: parses arguments and calls the library; nothing else lives here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from rdd_deploy.errors import RDDError

if TYPE_CHECKING:
    from rdd_deploy.distill.config import TrainConfig

app = typer.Typer(help="Relative Difficulty Distillation for segmentation: train, distil, export, deploy.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from rdd_deploy import __version__
        print(f"rdd-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")) -> None:
    """Relative Difficulty Distillation for semantic segmentation, from training to the edge."""


# --- models -------------------------------------------------------------------------------------------------


@app.command("models")
def models_command() -> None:
    """List the registered architectures."""
    from rdd_deploy.models import MODELS, model_variants
    for name in sorted(MODELS):
        print(f"{name:16s} {MODELS[name].description} [variants: {', '.join(model_variants(name))}]")


@app.command("convert")
def convert_command(
    source: Path = typer.Argument(..., help="The official code's state dict, e.g. "
                                  "deeplabv3_resnet101_citys_best_model.pth."),
    from_: str = typer.Option(..., "--from", help="Where it comes from: cirkd (the official RDD/CIRKD code)."),
    model: str = typer.Option(..., "--model", help="deeplabv3_r101, deeplabv3_r18, deeplabv3_mbv2 or pspnet_r18."),
    num_classes: int = typer.Option(..., "--num-classes", min=1, help="Classes the file predicts (19 for Cityscapes)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Take class names and palette from this data set "
                                          "(cityscapes, camvid, voc, ade20k)."),
    out: Path = typer.Option(..., "--out", help="The rdd-deploy checkpoint to write (.pt)."),
) -> None:
    """Convert an official RDD/CIRKD checkpoint into an rdd-deploy checkpoint (official variant and input)."""
    from rdd_deploy.models.cirkd import SOURCES, convert_cirkd
    if from_ not in SOURCES:
        raise RDDError(f"--from '{from_}' is not supported; choose one of: {', '.join(SOURCES)}")
    written = convert_cirkd(source, model, num_classes, out, dataset)
    console.print(f"wrote {written} (official {model}, BGR input minus the Caffe mean, align_corners=True)")


# --- training (distill) -------------------------------------------------------------------------------------


def _load_recipe(config: Path, overrides: list[str], **fields: object) -> TrainConfig:
    """A YAML recipe with `--set section.key=value` overrides, then the shortcut options that were given."""
    from rdd_deploy.distill.config import load_config
    shortcuts = {"data.dataset": fields.get("data"), "optim.iters": fields.get("iters"),
                 "optim.batch_size": fields.get("batch_size"), "distill.method": fields.get("method"),
                 "teacher.checkpoint": fields.get("teacher")}
    given = [f"{key}={value}" for key, value in shortcuts.items() if value is not None]
    return load_config(config, list(overrides) + given)


def _recipe_argument() -> typer.models.ArgumentInfo:
    return typer.Argument(..., help="YAML recipe, e.g. configs/cityscapes/deeplabv3_r18_rdd.yaml.")


def _set_option() -> typer.models.OptionInfo:
    return typer.Option([], "--set", help="Override a recipe field: section.key=value (repeatable), "
                                          "e.g. --set optim.lr=0.01 --set distill.rdd.mode=or.")


def _data_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--data", help="Data set NAME:PATH (overrides data.dataset).")


def _iters_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--iters", min=1)


def _batch_size_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--batch-size", min=1, help="Global batch, split over torchrun's processes.")


def _resume_option() -> typer.models.OptionInfo:
    return typer.Option(False, "--resume", help="Continue the run in --out from its last.pt (which must exist).")


def _auto_resume_option() -> typer.models.OptionInfo:
    return typer.Option(False, "--auto-resume", help="Continue from --out's last.pt when there is one, else start: "
                        "one command for the first start and every restart (sbatch --requeue, torchrun "
                        "--max-restarts, Kubernetes).")


def _timeout_option() -> typer.models.OptionInfo:
    return typer.Option(30.0, "--dist-timeout", min=0.1, help="Minutes a collective may wait for a slow rank "
                        "during training (start-up has its own, --startup-timeout).")


def _startup_timeout_option() -> typer.models.OptionInfo:
    return typer.Option(5.0, "--startup-timeout", min=0.1, help="Minutes the ranks may wait for each other to "
                        "start and pass their start-up checks.")


def _device_option() -> typer.models.OptionInfo:
    return typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")


def _is_main() -> bool:
    from rdd_deploy.distill.launch import is_main_process
    return is_main_process()


def _run_training(config: TrainConfig, out: Optional[Path], resume: bool, auto_resume: bool, device: str,
                  timeouts: tuple[float, float], suffix: str = "") -> None:
    from datetime import timedelta

    from rdd_deploy.distill.trainer import train
    if resume and auto_resume:
        raise RDDError("give --resume (last.pt must exist) or --auto-resume (use it when it exists), not both")
    run_dir = out or Path("runs") / f"{config.name}{suffix}"
    train(config, run_dir, resume="auto" if auto_resume else resume, device=device,
          startup_timeout=timedelta(minutes=timeouts[0]), timeout=timedelta(minutes=timeouts[1]))
    if _is_main():
        console.print(f"[bold green]done[/]: {run_dir}/best.pt (best val mIoU), {run_dir}/last.pt", highlight=False)


@app.command("train-teacher")
def train_teacher_command(
    config: Path = _recipe_argument(), overrides: list[str] = _set_option(),
    data: Optional[str] = _data_option(), iters: Optional[int] = _iters_option(),
    batch_size: Optional[int] = _batch_size_option(),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<recipe name>)."),
    resume: bool = _resume_option(), auto_resume: bool = _auto_resume_option(), device: str = _device_option(),
    startup_timeout: float = _startup_timeout_option(), dist_timeout: float = _timeout_option(),
) -> None:
    """Train a teacher with cross-entropy (plus its auxiliary head, which TFE-RDD needs)."""
    recipe = _load_recipe(config, overrides, data=data, iters=iters, batch_size=batch_size)
    if recipe.distill.method != "ce":
        raise RDDError(f"{config} distils with '{recipe.distill.method}'; teachers train with method ce "
                       "(use `rdd-deploy distill` for students)")
    _run_training(recipe, out, resume, auto_resume, device, (startup_timeout, dist_timeout))


@app.command("distill")
def distill_command(
    config: Path = _recipe_argument(), overrides: list[str] = _set_option(),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher checkpoint (overrides "
                                           "teacher.checkpoint)."),
    method: Optional[str] = typer.Option(None, "--method", help="ce, kd, rdd, at, cwd, at+rdd or cwd+rdd."),
    data: Optional[str] = _data_option(), iters: Optional[int] = _iters_option(),
    batch_size: Optional[int] = _batch_size_option(),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<recipe name>-<method>)."),
    resume: bool = _resume_option(), auto_resume: bool = _auto_resume_option(), device: str = _device_option(),
    startup_timeout: float = _startup_timeout_option(), dist_timeout: float = _timeout_option(),
) -> None:
    """Distil a student from a frozen teacher (RDD by default); torchrun runs it on many GPUs."""
    recipe = _load_recipe(config, overrides, data=data, iters=iters, batch_size=batch_size, method=method,
                          teacher=teacher)
    _run_training(recipe, out, resume, auto_resume, device, (startup_timeout, dist_timeout),
                  suffix=f"-{recipe.distill.method}")


def _parse_scales(text: str) -> list[float]:
    try:
        scales = [float(v) for v in text.split(",")]
    except ValueError:
        raise RDDError(f"--scales must be comma-separated numbers such as 0.75,1,1.25, got '{text}'") from None
    if any(s <= 0 for s in scales):
        raise RDDError(f"--scales must be positive, got '{text}'")
    return scales


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Teacher or student checkpoint (.pt)."),
    data: str = typer.Option(..., "--data", help="Data set NAME:PATH, or synthetic."),
    split: str = typer.Option("val", "--split"),
    flip: bool = typer.Option(False, "--flip", help="Average with the horizontally flipped prediction."),
    scales: str = typer.Option("1.0", "--scales", help="Multi-scale test, e.g. 0.75,1,1.25."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1),
    device: str = _device_option(),
    workers: int = typer.Option(2, "--workers", min=0, help="DataLoader processes decoding the next images."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON."),
) -> None:
    """mIoU, per-class IoU and pixel accuracy of a PyTorch checkpoint on whole images (torchrun splits them)."""
    from rdd_deploy.distill.evaluate import evaluate_checkpoint
    from rdd_deploy.runtime.tables import print_fitted, validation_table
    main = _is_main()
    with _progress(disable=not main) as progress:
        task = progress.add_task(f"evaluating {checkpoint.name}", total=None)
        result = evaluate_checkpoint(checkpoint, data, split, _parse_scales(scales), flip, max_images, device,
                                     on_image=lambda: progress.advance(task), workers=workers)
    if main:
        print_fitted(validation_table(result))
        _write_json(json_out, {k: v for k, v in result.items() if k != "confusion"})

# --- quickstart ---------------------------------------------------------------------------------------------


@app.command("quickstart")
def quickstart_command(
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/quickstart/<date-time>)."),
    scale: float = typer.Option(1.0, "--scale", min=0.001, help="Multiply every iteration count "
                                "(2 or 4 for better models; the default fits in five minutes on 2 CPU cores)."),
    train_teacher: bool = typer.Option(False, "--train-teacher", help="Train the teacher from its recipe "
                                       "(8000 iterations, 15-30 minutes on a CPU) instead of the packaged one."),
) -> None:
    """The whole pipeline on built-in synthetic data: teacher, CE/KD/RDD students, ONNX export, parity, latency."""
    from rdd_deploy.quickstart import quickstart, summary_tables
    from rdd_deploy.runtime.tables import print_fitted
    summary = quickstart(out, scale, train_teacher=train_teacher)
    print_fitted(summary_tables(summary))


# --- export -------------------------------------------------------------------------------------------------


def _trt_calibrate_option() -> typer.models.OptionInfo:
    return typer.Option(False, "--trt-calibrate", help="TensorRT 10 only: an int8 engine calibrated by TensorRT "
                        "from the FP32 ONNX instead of built from the Q/DQ INT8 ONNX.")


@app.command("export")
def export_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Teacher, student or distillation checkpoint (.pt)."),
    onnx: bool = typer.Option(True, "--onnx", help="Write ONNX (always on: TensorRT builds from it)."),
    trt: bool = typer.Option(False, "--trt", help="Also build a TensorRT engine + .engine.json (needs a GPU)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or int8 (int8 needs --calib-data; its "
                                  "QDQ graph is tuned for this CPU's ONNX Runtime, or for TensorRT with --trt)."),
    int8_for: Optional[str] = typer.Option(None, "--int8-for", help="cpu or tensorrt: tune the int8 QDQ graph for "
                                           "this CPU or for a TensorRT engine built later with `rdd-deploy engine` "
                                           "(default: tensorrt with --trt, else cpu)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW, multiples of 8 "
                                             "(default: the checkpoint's crop size, else 512x1024)."),
    batch: int = typer.Option(1, "--batch", help="Batch size (the maximum batch of a --dynamic engine)."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch, height and width."),
    fused_preprocess: bool = typer.Option(False, "--fused-preprocess",
                                          help="Take raw uint8 NHWC RGB; normalisation runs inside the graph."),
    argmax: bool = typer.Option(False, "--argmax", help="Add a 'mask' output: int32 argmax [N,H,W]."),
    calib_data: Optional[str] = typer.Option(None, "--calib-data", help="Data set NAME:PATH or synthetic: int8 "
                                             "calibrates on its train split; 4 val images join the verification."),
    calib_images: int = typer.Option(200, "--calib-images", help="Number of calibration images."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile."),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT builder workspace limit in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="TensorRT timing cache file "
                                                "(default: OUT/tensorrt.timing.cache; loaded, then updated)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: the checkpoint's folder)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check every file against PyTorch on real "
                                "images; a file below its parity tolerance is not written."),
    trt_calibrate: bool = _trt_calibrate_option(),
) -> None:
    """Export a checkpoint to verified ONNX (fp32/fp16/int8) and optionally a TensorRT engine."""
    from rdd_deploy.export import ExportOptions, export, parse_input_size

    export(checkpoint, ExportOptions(
        trt=trt, precision=precision, input_size=parse_input_size(input_size) if input_size else None,
        batch=batch, dynamic=dynamic, fused_preprocess=fused_preprocess, argmax=argmax, calib_data=calib_data,
        calib_images=calib_images, calib_method=calib_method, out=out, verify=verify, workspace_gib=workspace,
        timing_cache=timing_cache, trt_calibrate=trt_calibrate, int8_for=int8_for))


@app.command("engine")
def engine_command(
    model: Path = typer.Argument(..., help="ONNX file written by `rdd-deploy export` (fp32, fp16 or int8 Q/DQ)."),
    out: Path = typer.Option(..., "--out", help="Folder for the .engine and its .engine.json sidecar."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, fp16 or int8 (default: the ONNX "
                                            "file's; TensorRT 11 takes fp16/int8 only from the fp16/int8 ONNX)."),
    dynamic: Optional[str] = typer.Option(None, "--dynamic", help="Optimization profile MIN:OPT:MAX, each NxHxW "
                                          "(default: batch 1..--batch, half to full export size)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Largest batch of a dynamic engine without --dynamic."),
    data: list[Path] = typer.Option([], "--data", help="Images or folders to verify on (repeatable; default: "
                                    "scikit-image's photos, the ones `export` verified on)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare the engine with ONNX Runtime on the "
                                "same ONNX file; an engine below its precision's tolerance is not written."),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT builder workspace limit in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="TensorRT timing cache file "
                                                "(default: OUT/tensorrt.timing.cache; loaded, then updated)."),
    trt_calibrate: bool = _trt_calibrate_option(),
    calib_data: list[Path] = typer.Option([], "--calib-data", help="Images or folders for --trt-calibrate."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="--trt-calibrate: minmax or entropy."),
) -> None:
    """Build a TensorRT engine from an exported ONNX file on this GPU (no PyTorch needed), verified vs ONNX Runtime."""
    from rdd_deploy.export.engine import EngineOptions, build_engine, load_images, parse_profile, verification_photos
    from rdd_deploy.runtime.tensorrt_engine import import_cudart, import_tensorrt

    import_tensorrt(), import_cudart()  # say what is missing before reading any image
    if workspace <= 0:
        raise RDDError(f"--workspace must be > 0 GiB, got {workspace}")
    options = EngineOptions(precision, parse_profile(dynamic) if dynamic else None, batch, workspace, timing_cache,
                            trt_calibrate, calib_method, load_images(calib_data) if calib_data else None)
    photos = verification_photos(data) if verify else None
    written = build_engine(model, out, options, photos)
    console.print(f"[bold green]Engine complete[/]: {', '.join(map(str, written))}", highlight=False)


@app.command("doctor")
def doctor_command(json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """What the runtime can use on this host: ONNX Runtime, TensorRT, GPU, OpenVINO, CPU features, fast precisions."""
    from rdd_deploy.runtime.doctor import collect, format_report

    report = collect()
    if json_out:
        import json
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(format_report(report)))


# --- runtime ------------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import Progress

    from rdd_deploy.runtime import Segmenter


def _backend_option() -> typer.models.OptionInfo:
    return typer.Option("auto", "--backend", help="auto (by file suffix), onnxruntime, openvino or tensorrt.")


def _precision_hint_option() -> typer.models.OptionInfo:
    return typer.Option("f32", "--precision-hint", help="OpenVINO inference precision: f32, bf16 or f16 "
                                                        "(bf16 needs AVX-512 BF16 or AMX).")


def _providers_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--providers", help="Comma-separated ONNX Runtime providers (default: TensorRT, "
                                                  "CUDA, CPU, whichever this build has).")


def _json_option(what: str) -> typer.models.OptionInfo:
    return typer.Option(None, "--json", help=f"Also write the {what} as JSON (atomically).")


def _open_segmenter(path: Path, backend: str, providers: Optional[str], like: Segmenter | None = None,
                    precision_hint: str = "f32") -> Segmenter:
    """An exported model, or a .pt checkpoint run in PyTorch (torch is imported only then)."""
    if path.suffix.lower() in (".pt", ".pth"):
        from rdd_deploy.parity import torch_segmenter
        return torch_segmenter(path, like=like)
    from rdd_deploy.runtime import Segmenter
    return Segmenter.from_file(path, backend, providers.split(",") if providers else None, precision_hint)


def _write_json(path: Optional[Path], payload: dict) -> None:
    if path is not None:
        import json
        from rdd_deploy.atomic import atomic_write_text
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {path}")


def _val_samples(data: str, max_images: Optional[int], num_classes: int) -> tuple[Iterator, int, Optional[int]]:
    """(image, label) pairs of a data set's val split, their count, and the data set's ignore index."""
    from rdd_deploy.data import build_dataset
    from rdd_deploy.runtime.evaluate import dataset_samples
    dataset = build_dataset(data, split="val")
    info = getattr(dataset, "info", None)
    names = getattr(info, "class_names", None)
    if names is not None and len(names) != num_classes:
        raise RDDError(f"data set {data} has {len(names)} classes but the model has {num_classes}")
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    return dataset_samples(dataset, max_images), count, getattr(info, "ignore_index", None)


def _progress(disable: bool = False) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=disable)


def _parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RDDError(f"--input-size must look like 512x1024 (height x width), got '{text}'") from None
    return height, width


@app.command("bench")
def bench_command(
    models: list[Path] = typer.Argument(..., help="Exported models (.onnx, .engine) and/or .pt checkpoints."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Test image HxW, e.g. 512x1024 "
                                             "(default: the first exported model's export size, else 512x1024)."),
    batch: int = typer.Option(1, "--batch", min=1), warmup: int = typer.Option(20, "--warmup", min=0),
    iters: int = typer.Option(200, "--iters", min=1), json_out: Optional[Path] = _json_option("latency reports"),
    backend: str = typer.Option("auto", "--backend", help="auto (by file suffix), onnxruntime, openvino, "
                                "tensorrt, or all: every backend and OpenVINO precision this host runs."),
    providers: Optional[str] = _providers_option(), precision_hint: str = _precision_hint_option(),
) -> None:
    """Latency of each model, engine-only and end-to-end, interleaved, in one table; checkpoints run in PyTorch."""
    from rdd_deploy.runtime.engine import available_runs
    from rdd_deploy.runtime.latency import benchmark_all, speedups
    from rdd_deploy.runtime.tables import bench_table, print_fitted
    runs = ([(path, b, hint) for path in models for b, hint in available_runs(path)] if backend == "all"
            else [(path, backend, precision_hint) for path in models])
    models = [path for path, _, _ in runs]
    segmenters = [_open_segmenter(path, b, providers, precision_hint=hint) for path, b, hint in runs]
    if input_size is not None:
        size = _parse_size(input_size)
    else:
        size = next((s.info.input_size for s in segmenters if s.engine.backend != "torch" and s.info.input_size),
                    (512, 1024))
    with console.status(f"timing {len(segmenters)} runs interleaved ({warmup} warm-up + {iters} rounds)"):
        reports = benchmark_all(segmenters, size, batch, warmup, iters, models)
    reference = next((i for i, s in enumerate(segmenters) if s.engine.backend == "torch"), 0)
    print_fitted(bench_table(reports, reference))
    results = [{**r.to_dict(), "speedup_vs_reference": x} for r, x in zip(reports, speedups(reports, reference))]
    _write_json(json_out, {"reference": str(models[reference]), "results": results})


@app.command("validate")
def validate_command(
    model: Path = typer.Argument(..., help="Exported model (.onnx, .engine)."),
    data: str = typer.Option(..., "--data", help="Data set as name:path, e.g. cityscapes:/data/cityscapes."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1, help="Validate on the first N images."),
    json_out: Optional[Path] = _json_option("scores"),
    backend: str = _backend_option(), providers: Optional[str] = _providers_option(),
    precision_hint: str = _precision_hint_option(),
) -> None:
    """mIoU and per-class IoU of an exported model on a data set's val split."""
    from rdd_deploy.runtime.evaluate import evaluate
    from rdd_deploy.runtime.tables import print_fitted, validation_table
    segmenter = _open_segmenter(model, backend, providers, precision_hint=precision_hint)
    samples, count, ignore_index = _val_samples(data, max_images, segmenter.info.num_classes)
    with _progress() as progress:
        task = progress.add_task(f"validating {model.name}", total=count)
        result = evaluate(segmenter, samples, ignore_index, on_image=lambda: progress.advance(task))
    print_fitted(validation_table(result))
    _write_json(json_out, {"data": data, **result})


@app.command("parity")
def parity_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "--reference", help="The reference: the PyTorch checkpoint "
                                    "(.pt) the model came from, or another exported model (e.g. the fp32 ONNX)."),
    model: Path = typer.Option(..., "--model", help="Exported model (.onnx, .engine)."),
    data: Optional[str] = typer.Option(None, "--data", help="name:path of a labelled data set (val split); "
                                       "default: scikit-image's sample photos, argmax agreement only."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1),
    json_out: Optional[Path] = _json_option("parity report"),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", help="Percent of pixels whose argmax "
                                                  "must match (default by precision: fp32 99.9, fp16 99, "
                                                  "bf16 98.5, int8 97)."),
    max_miou_drop: Optional[float] = typer.Option(None, "--max-miou-drop", help="Largest allowed |mIoU difference| "
                                                  "in points (default by precision: fp32 0.1, fp16 0.5, "
                                                  "bf16 0.5, int8 1)."),
    backend: str = _backend_option(), providers: Optional[str] = _providers_option(),
    precision_hint: str = _precision_hint_option(),
) -> None:
    """Same images through the reference (PyTorch or exported) and the model; exit 1 when a tolerance is broken."""
    from rdd_deploy.runtime.parity import compare, reference_photos
    from rdd_deploy.runtime.tables import parity_table, print_fitted
    candidate = _open_segmenter(model, backend, providers, precision_hint=precision_hint)
    reference = _open_segmenter(checkpoint, "auto", None, like=candidate)
    if data is not None:
        samples, count, ignore_index = _val_samples(data, max_images, candidate.info.num_classes)
    else:
        samples, ignore_index = reference_photos()[:max_images], None
        count = len(samples)
    with _progress() as progress:
        task = progress.add_task(f"comparing {model.name} with {checkpoint.name}", total=count)
        report = compare(reference, candidate, samples, min_agreement, max_miou_drop, ignore_index,
                         on_image=lambda: progress.advance(task))
    print_fitted(parity_table(report, f"parity: {model.name} vs {checkpoint.name}"))
    _write_json(json_out, {"checkpoint": str(checkpoint), "model": str(model), "data": data, **report.to_dict()})
    for failure in report.failures:
        console.print(f"[bold red]parity failed:[/] {failure}", highlight=False, soft_wrap=True)
    if not report.passed:
        raise typer.Exit(1)
    console.print("[bold green]parity passed[/]")


@app.command("predict")
def predict_command(
    model: Path = typer.Argument(..., help="Exported model (.onnx, .engine)."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders of images (RGB; grayscale, palette "
                                        "and alpha images are converted to RGB)."),
    out: Path = typer.Option(..., "--out", help="Folder for <name>.png palette masks."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <name>_overlay.png, the mask over the photo."),
    backend: str = _backend_option(), providers: Optional[str] = _providers_option(),
    precision_hint: str = _precision_hint_option(),
) -> None:
    """Class-index masks as palette PNGs (pixel value = class), optionally colour overlays."""
    from rdd_deploy.runtime.masks import write_predictions
    segmenter = _open_segmenter(model, backend, providers, precision_hint=precision_hint)
    written = write_predictions(segmenter, images, out, overlay,
                                warn=lambda note: console.print(f"[yellow]warning:[/] {note}", highlight=False,
                                                                soft_wrap=True))
    console.print(f"wrote {len(written)} files to {out}")


# import names of the packages that only the [train] extra installs (pyproject.toml)
TRAIN_MODULES = frozenset({"torch", "torchvision", "onnx", "onnxscript", "onnxslim", "pydantic", "tensorboard"})


def _missing_train_extra(exc: ModuleNotFoundError) -> RDDError | None:
    """The one-line advice for a training-only package missing from a runtime-only install, else None."""
    module = (exc.name or "").partition(".")[0]
    if module not in TRAIN_MODULES:
        return None
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "this command")
    return RDDError(f"`rdd-deploy {command}` needs {module}, which the runtime-only install leaves out: "
                    'pip install "rdd-deploy[train]" (the runtime alone runs bench, validate, parity and predict '
                    "on exported models)")


def run() -> None:
    """Console entry point: an RDDError, or a [train] package missing, becomes one red line and exit code 1; a
    training run stopped by SIGTERM/SIGUSR1 exits with 128 + the signal number after saving last.pt."""
    entry = app
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: its failure summary then shows our traceback
        from torch.distributed.elastic.multiprocessing.errors import record
        entry = record(app)
    try:
        entry()
    except (RDDError, ModuleNotFoundError) as exc:
        error = exc if isinstance(exc, RDDError) else _missing_train_extra(exc)
        if error is None:
            raise
        from rich.markup import escape  # messages hold brackets, e.g. pip install "rdd-deploy[trt]"
        console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:
        preemption = sys.modules.get("rdd_deploy.distill.preemption")  # loaded only where training ran
        if preemption is None or not isinstance(exc, preemption.TrainingStopped):
            raise
        if _is_main():
            console.print(f"[bold yellow]{exc}[/]", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
