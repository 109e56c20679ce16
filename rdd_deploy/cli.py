"""The `rdd-deploy` command line: parses arguments and calls the library; nothing else lives here."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from rdd_deploy.errors import RDDError

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
    from rdd_deploy.models import MODELS
    for name in sorted(MODELS):
        print(f"{name:16s} {MODELS[name].description}")


# --- training (distill) -------------------------------------------------------------------------------------

# --- export -------------------------------------------------------------------------------------------------

# --- runtime ------------------------------------------------------------------------------------------------


def run() -> None:
    """Console entry point: an RDDError becomes one red line on stderr and exit code 1."""
    try:
        app()
    except RDDError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
