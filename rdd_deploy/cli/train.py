"""Commands that train and score PyTorch models: models, convert, train-teacher, distill, evaluate, quickstart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from rdd_deploy.cli.options import (auto_resume_option, batch_size_option, confusion_option, console, data_option,
                                    device_option, dist_timeout_option, flag, is_main, iters_option, progress_bar,
                                    recipe_argument, resume_option, set_option, startup_timeout_option,
                                    write_confusion, write_json)
from rdd_deploy.errors import RDDError

if TYPE_CHECKING:
    from rdd_deploy.distill.config import TrainConfig

app = typer.Typer()


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


def _load_recipe(config: Path, overrides: list[str], **fields: object) -> TrainConfig:
    """A YAML recipe with `--set section.key=value` overrides, then the shortcut options that were given."""
    from rdd_deploy.distill.config import load_config
    shortcuts = {"data.dataset": fields.get("data"), "optim.iters": fields.get("iters"),
                 "optim.batch_size": fields.get("batch_size"), "distill.method": fields.get("method"),
                 "teacher.checkpoint": fields.get("teacher")}
    given = [f"{key}={value}" for key, value in shortcuts.items() if value is not None]
    return load_config(config, list(overrides) + given)


def _run_training(config: TrainConfig, out: Optional[Path], resume: bool, auto_resume: bool, device: str,
                  timeouts: tuple[float, float], suffix: str = "") -> None:
    from datetime import timedelta

    from rdd_deploy.distill.trainer import train
    if resume and auto_resume:
        raise RDDError("give --resume (last.pt must exist) or --auto-resume (use it when it exists), not both")
    run_dir = out or Path("runs") / f"{config.name}{suffix}"
    train(config, run_dir, resume="auto" if auto_resume else resume, device=device,
          startup_timeout=timedelta(minutes=timeouts[0]), timeout=timedelta(minutes=timeouts[1]))
    if is_main():
        console.print(f"[bold green]done[/]: {run_dir}/best.pt (best val mIoU), {run_dir}/last.pt", highlight=False)


@app.command("train-teacher")
def train_teacher_command(
    config: Path = recipe_argument(), overrides: list[str] = set_option(),
    data: Optional[str] = data_option(), iters: Optional[int] = iters_option(),
    batch_size: Optional[int] = batch_size_option(),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<recipe name>)."),
    resume: bool = resume_option(), auto_resume: bool = auto_resume_option(), device: str = device_option(),
    startup_timeout: float = startup_timeout_option(), dist_timeout: float = dist_timeout_option(),
) -> None:
    """Train a teacher with cross-entropy (plus its auxiliary head, which TFE-RDD needs)."""
    recipe = _load_recipe(config, overrides, data=data, iters=iters, batch_size=batch_size)
    if recipe.distill.method != "ce":
        raise RDDError(f"{config} distils with '{recipe.distill.method}'; teachers train with method ce "
                       "(use `rdd-deploy distill` for students)")
    _run_training(recipe, out, resume, auto_resume, device, (startup_timeout, dist_timeout))


@app.command("distill")
def distill_command(
    config: Path = recipe_argument(), overrides: list[str] = set_option(),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Teacher checkpoint (overrides "
                                           "teacher.checkpoint)."),
    method: Optional[str] = typer.Option(None, "--method", help="ce, kd, rdd, at, cwd, at+rdd or cwd+rdd."),
    data: Optional[str] = data_option(), iters: Optional[int] = iters_option(),
    batch_size: Optional[int] = batch_size_option(),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<recipe name>-<method>)."),
    resume: bool = resume_option(), auto_resume: bool = auto_resume_option(), device: str = device_option(),
    startup_timeout: float = startup_timeout_option(), dist_timeout: float = dist_timeout_option(),
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
    flip: bool = flag(False, "--flip", help="Average with the horizontally flipped prediction."),
    scales: str = typer.Option("1.0", "--scales", help="Multi-scale test, e.g. 0.75,1,1.25."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1),
    device: str = device_option(),
    workers: int = typer.Option(2, "--workers", min=0, help="DataLoader processes decoding the next images."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result, confusion matrix "
                                            "included, as JSON."),
    confusion: Optional[Path] = confusion_option(),
) -> None:
    """mIoU, per-class IoU, pixel accuracy and the confusion matrix of a PyTorch checkpoint on whole images
    (torchrun splits them)."""
    from rdd_deploy.distill.evaluate import evaluate_checkpoint
    from rdd_deploy.runtime.tables import print_fitted, validation_table
    main = is_main()
    with progress_bar(disable=not main) as progress:
        task = progress.add_task(f"evaluating {checkpoint.name}", total=None)
        result = evaluate_checkpoint(checkpoint, data, split, _parse_scales(scales), flip, max_images, device,
                                     on_image=lambda: progress.advance(task), workers=workers)
    if main:
        print_fitted(validation_table(result))
        write_json(json_out, result)
        write_confusion(confusion, result)


@app.command("quickstart")
def quickstart_command(
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/quickstart/<date-time>)."),
    scale: float = typer.Option(1.0, "--scale", min=0.001, help="Multiply every iteration count "
                                "(2 or 4 for better models; the default fits in five minutes on 2 CPU cores)."),
    train_teacher: bool = flag(False, "--train-teacher", help="Train the teacher from its recipe "
                                       "(8000 iterations, 15-30 minutes on a CPU) instead of the packaged one."),
) -> None:
    """The whole pipeline on built-in synthetic data: teacher, CE/KD/RDD students, ONNX export, parity, latency."""
    from rdd_deploy.quickstart import quickstart, summary_tables
    from rdd_deploy.runtime.tables import print_fitted
    summary = quickstart(out, scale, train_teacher=train_teacher)
    print_fitted(summary_tables(summary))
    console.print(f"release report: {summary['report']} (ship {summary['recommendation']})", highlight=False,
                  soft_wrap=True)
