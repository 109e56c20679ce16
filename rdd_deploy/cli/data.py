"""The command that checks a data set before training on it: check-data (runtime-only install too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from rdd_deploy.cli.options import console, json_option, progress_bar, write_json

app = typer.Typer()


def _tables(report: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    splits = Table(title=f"{report['data']}: splits", title_justify="left")
    for name in ("split", "images", "image sizes", "ignored %"):
        splits.add_column(name, justify="left" if name in ("split", "image sizes") else "right")
    for split, numbers in report["splits"].items():
        sizes = ", ".join(f"{size} ({count})" for size, count in list(numbers["sizes"].items())[:3])
        more = len(numbers["sizes"]) - 3
        splits.add_row(split, str(numbers["images"]), sizes + (f", +{more} more" if more > 0 else ""),
                       f"{100 * numbers['ignored_share']:.2f}")
    from rdd_deploy.data.check import RARE_IMAGES, RARE_SHARE

    classes = Table(title=f"classes (rare: in < {RARE_IMAGES} training images or < {100 * RARE_SHARE:g} % of "
                          "their pixels)", title_justify="left")
    classes.add_column("class")
    for split in report["splits"]:
        classes.add_column(f"{split} %", justify="right")
        classes.add_column(f"{split} images", justify="right")
    classes.add_column("note")
    for row in report["classes"]:
        cells = [f"{100 * row[f'{s}_share']:.2f}" if c == 0 else str(row[f"{s}_images"])
                 for s in report["splits"] for c in (0, 1)]
        classes.add_row(row["name"], *cells, "[yellow]rare[/]" if row["rare"] else "")
    return [splits, classes]


@app.command("check-data")
def check_data_command(
    data: str = typer.Argument(..., help="Data set folder:PATH (dataset.yaml or a CVAT export) or coco:PATH."),
    json_out: Optional[Path] = json_option("report"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Files read at once (default: one "
                                          "per CPU core)."),
) -> None:
    """Read every image and mask once; list each problem on one line (exit 1), with per-class statistics."""
    from rich.markup import escape

    from rdd_deploy.data.check import check
    from rdd_deploy.runtime.tables import print_fitted

    with progress_bar() as progress:
        task = progress.add_task(f"reading {data}", total=None)
        report = check(data, workers, on_item=lambda: progress.advance(task))
    for table in _tables(report):
        print_fitted(table)
    write_json(json_out, report)
    for problem in report["problems"]:
        console.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if report["problems"]:
        console.print(f"[bold red]{len(report['problems'])} problems[/]", highlight=False)
        raise typer.Exit(1)
    console.print("[bold green]no problems found[/]", highlight=False)
