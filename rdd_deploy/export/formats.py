"""The table of export formats (the single source of truth), file naming and the uniform success/failure log."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec

from rich.console import Console

from rdd_deploy.errors import RDDError

console = Console(stderr=True)


@dataclass(frozen=True)
class Format:
    """One export target: its name in logs and its file suffix."""

    name: str
    suffix: str


# ONNX builds anywhere; a TensorRT engine only on (and for) the GPU model and TensorRT version that runs it.
FORMATS: dict[str, Format] = {"onnx": Format("ONNX", ".onnx"), "tensorrt": Format("TensorRT", ".engine")}
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def artifact_name(model_name: str, input_size: tuple[int, int], dynamic: bool, precision: str, fmt: str) -> str:
    """`<model>_<h>x<w>[_dyn][_fp16|_int8]<suffix>`; FP32 carries no precision tag."""
    tag = "" if precision == "fp32" else f"_{precision}"
    dyn = "_dyn" if dynamic else ""
    return f"{model_name}_{input_size[0]}x{input_size[1]}{dyn}{tag}{FORMATS[fmt].suffix}"


def human_size(num_bytes: int) -> str:
    """Bytes as a short human-readable string (KB/MB/GB, powers of 1000 like `ls -h --si`)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"


P = ParamSpec("P")


def reported(fmt: str, precision: str = "") -> Callable[[Callable[P, Path]], Callable[P, Path]]:
    """Wrap an `export_<format>()` so every format logs success, time and file size (or failure) the same way."""
    label = f"{FORMATS[fmt].name} {precision}".strip()

    def decorate(export_fn: Callable[P, Path]) -> Callable[P, Path]:
        @functools.wraps(export_fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Path:
            console.print(f"[bold]{label}[/] export starting ...", highlight=False)
            start = time.perf_counter()
            try:
                path = export_fn(*args, **kwargs)
            except RDDError:
                console.print(f"[red]✗ {label}[/] export failed after {time.perf_counter() - start:.1f} s",
                              highlight=False)
                raise
            console.print(f"[green]✓ {label}[/] export success {time.perf_counter() - start:.1f} s, "
                          f"saved as {path} ({human_size(path.stat().st_size)})", highlight=False)
            return path

        return wrapper

    return decorate
