"""Options, helpers and the console shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console

from rdd_deploy.errors import RDDError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import Progress

    from rdd_deploy.runtime import Segmenter

console = Console(stderr=True)


def flag(default: bool, *names: str, help: str) -> Any:  # noqa: A002 -- typer's own keyword
    """A boolean option shown in --help as a flag, without a `<bool>` value."""
    return typer.Option(default, *names, help=help, metavar="")


def recipe_argument() -> typer.models.ArgumentInfo:
    return typer.Argument(..., help="YAML recipe, e.g. configs/cityscapes/deeplabv3_r18_rdd.yaml.")


def set_option() -> typer.models.OptionInfo:
    return typer.Option([], "--set", help="Override a recipe field: section.key=value (repeatable), "
                                          "e.g. --set optim.lr=0.01 --set distill.rdd.mode=or.")


def data_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--data", help="Data set NAME:PATH (overrides data.dataset).")


def iters_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--iters", min=1)


def batch_size_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--batch-size", min=1, help="Global batch, split over torchrun's processes.")


def resume_option() -> typer.models.OptionInfo:
    return flag(False, "--resume", help="Continue the run in --out from its last.pt (which must exist).")


def auto_resume_option() -> typer.models.OptionInfo:
    return flag(False, "--auto-resume", help="Continue from --out's last.pt when there is one, else start: "
                        "one command for the first start and every restart (sbatch --requeue, torchrun "
                        "--max-restarts, Kubernetes).")


def dist_timeout_option() -> typer.models.OptionInfo:
    return typer.Option(30.0, "--dist-timeout", min=0.1, help="Minutes a collective may wait for a slow rank "
                        "during training (start-up has its own, --startup-timeout).")


def startup_timeout_option() -> typer.models.OptionInfo:
    return typer.Option(5.0, "--startup-timeout", min=0.1, help="Minutes the ranks may wait for each other to "
                        "start and pass their start-up checks.")


def device_option() -> typer.models.OptionInfo:
    return typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")


def is_main() -> bool:
    from rdd_deploy.distill.launch import is_main_process
    return is_main_process()


def backend_option() -> typer.models.OptionInfo:
    return typer.Option("auto", "--backend", help="auto (by file suffix), onnxruntime, openvino or tensorrt.")


def precision_hint_option() -> typer.models.OptionInfo:
    return typer.Option("f32", "--precision-hint", help="OpenVINO inference precision: f32, bf16 or f16 "
                                                        "(bf16 needs AVX-512 BF16 or AMX).")


def providers_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--providers", help="Comma-separated ONNX Runtime providers (default: TensorRT, "
                                                  "CUDA, CPU, whichever this build has).")


def json_option(what: str) -> typer.models.OptionInfo:
    return typer.Option(None, "--json", help=f"Also write the {what} as JSON (atomically).")


def confusion_option() -> typer.models.OptionInfo:
    return typer.Option(None, "--confusion", help="Also draw the confusion matrix, each row normalised, with the "
                                                  "class names, as a PNG figure at this path.")


def write_confusion(path: Optional[Path], result: dict) -> None:
    """Draw result["confusion"] (confusion_dict) as a PNG at `path`, when given."""
    if path is not None:
        from rdd_deploy.runtime.confusion import write_confusion_png
        write_confusion_png(result["confusion"]["counts"], result["confusion"]["classes"], path)
        console.print(f"wrote {path}")


def open_segmenter(path: Path, backend: str, providers: Optional[str], like: Segmenter | None = None,
                    precision_hint: str = "f32") -> Segmenter:
    """An exported model, or a .pt checkpoint run in PyTorch (torch is imported only then)."""
    if path.suffix.lower() in (".pt", ".pth"):
        from rdd_deploy.parity import torch_segmenter
        return torch_segmenter(path, like=like)
    import warnings

    from rdd_deploy.runtime.segmenter import Int8TargetWarning, Segmenter
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Int8TargetWarning)
        segmenter = Segmenter.from_file(path, backend, providers.split(",") if providers else None, precision_hint)
    for warning in caught:
        if issubclass(warning.category, Int8TargetWarning):
            console.print(f"[yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return segmenter


def write_json(path: Optional[Path], payload: dict) -> None:
    if path is not None:
        import json
        from rdd_deploy.atomic import atomic_write_text
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {path}")


def val_samples(data: str, max_images: Optional[int], num_classes: int) -> tuple[Iterator, int, Optional[int]]:
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


def progress_bar(disable: bool = False) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=disable)


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RDDError(f"--input-size must look like 512x1024 (height x width), got '{text}'") from None
    return height, width


def trt_calibrate_option() -> typer.models.OptionInfo:
    return flag(False, "--trt-calibrate", help="TensorRT 10 only: an int8 engine calibrated by TensorRT "
                        "from the FP32 ONNX instead of built from the Q/DQ INT8 ONNX.")
