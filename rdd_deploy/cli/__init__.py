"""The `rdd-deploy` command line: one module per command group, each a thin layer over the library.

    train.py    models, convert, train-teacher, distill, evaluate, quickstart   (needs the [train] extra)
    export.py   export, engine
    runtime.py  doctor, bench, validate, parity, predict                      (the runtime-only install)
    data.py     check-data                                                    (the runtime-only install)
    report.py   report: validate, parity and bench of every file, and which to ship (runtime-only for ONNX)
    options.py  the options and helpers they share
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from rdd_deploy.cli import data, export, report, runtime, train
from rdd_deploy.cli.options import console, is_main
from rdd_deploy.errors import RDDError

app = typer.Typer(help="Relative Difficulty Distillation for segmentation: train, distil, export, deploy.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from rdd_deploy import __version__
        print(f"rdd-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, metavar="",
                                                help="Print the version and exit.")) -> None:
    """Relative Difficulty Distillation for semantic segmentation, from training to the edge."""


for group in (train, export, runtime, data, report):
    app.add_typer(group.app)


# import names of the packages that only the [train] extra installs (pyproject.toml)
TRAIN_MODULES = frozenset({"torch", "torchvision", "onnx", "onnxscript", "onnxslim", "pydantic", "tensorboard"})


def _missing_train_extra(exc: ModuleNotFoundError) -> RDDError | None:
    """The one-line advice for a training-only package missing from a runtime-only install, else None."""
    module = (exc.name or "").partition(".")[0]
    if module not in TRAIN_MODULES:
        return None
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "this command")
    return RDDError(f"`rdd-deploy {command}` needs {module}, which the runtime-only install leaves out: "
                    'pip install "rdd-deploy[train]" (the runtime alone runs bench, validate, parity, predict and '
                    "report on exported models)")


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
        if is_main():
            console.print(f"[bold yellow]{exc}[/]", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
