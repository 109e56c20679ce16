"""Rich tables for the runtime commands: one table per report, the settings in its title.

`print_fitted` keeps them readable in any output: a pipe or CI log is 80 columns wide, where rich would cut a
15-column table's cells to "1…"; a table wider than the output is turned so that each record is a column.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from rdd_deploy.runtime.latency import LatencyReport, speedups
from rdd_deploy.runtime.parity import ParityReport


def natural_width(table: Table) -> int:
    """The columns a table needs with every cell on one line."""
    console = Console(file=io.StringIO(), width=100_000)
    return console.measure(table).maximum


def _turned(table: Table, records: Sequence[int]) -> Table:
    """Rows `records` of `table` as columns: the first output row holds their first cells (the record names)."""
    turned = Table(show_header=False)
    turned.add_column(overflow="fold")
    for _ in records:
        turned.add_column(justify="right", overflow="fold")  # fold: a value wider than the output wraps, never cut
    cells = [list(column.cells) for column in table.columns]
    for index, column in enumerate(table.columns):
        turned.add_row(column.header, *(cells[index][record] for record in records),
                       end_section=index == 0 and len(table.rows) > 1)
    return turned


def fit(renderable: RenderableType, width: int) -> RenderableType:
    """`renderable` with every table wider than `width` turned into record-per-column blocks that fit."""
    if isinstance(renderable, Group):
        return Group(*(fit(part, width) for part in renderable.renderables))
    if not isinstance(renderable, Table) or natural_width(renderable) <= width or not renderable.rows:
        return renderable
    blocks: list[list[int]] = [[]]
    for record in range(len(renderable.rows)):
        if blocks[-1] and natural_width(_turned(renderable, blocks[-1] + [record])) > width:
            blocks.append([])
        blocks[-1].append(record)
    # the title goes above the blocks at full width: as a table title it would wrap to the narrow first block
    title = renderable.title
    if isinstance(title, str):
        title = Text.from_markup(title, style="table.title")
    return Group(*([title] if title is not None else []), *(_turned(renderable, block) for block in blocks))


def print_fitted(renderable: RenderableType, console: Console | None = None) -> None:
    """Print tables to stdout (or `console`) in a layout that fits its width: no cell is ever cut."""
    console = console or Console()
    console.print(fit(renderable, console.width))


def _fmt(value: float | None, digits: int = 2) -> str:
    """A number with fixed digits, or an en dash for a missing one."""
    return "–" if value is None else f"{value:.{digits}f}"


def _runs_on(settings: dict[str, Any]) -> str:
    """Backend and provider in a few characters: 'ort CPU', 'ort CUDA', 'TensorRT 10.3', 'torch cpu'."""
    provider = str(settings["provider"]).replace("ExecutionProvider", "")
    if settings["backend"] == "onnxruntime":
        return f"ort {provider}"
    return provider if settings["backend"] == "tensorrt" else f"{settings['backend']} {provider}"


def bench_table(reports: Sequence[LatencyReport], reference: int = 0) -> Table:
    """One row per model: engine-only order statistics, end-to-end summary and speed-up vs reports[reference]."""
    first = reports[0].settings
    title = (f"latency in ms · input {first['input_size'][0]}x{first['input_size'][1]} · batch {first['batch']} · "
             f"warm-up {first['warmup']} · {first['iters']} runs · host {first['host']} · "
             "e2e = uint8 image to mask")
    table = Table(title=title, title_justify="left")
    for name in ("model", "format", "MB", "runs on"):
        table.add_column(name)
    for name in ("min", "mean", "p50", "p90", "p99", "std", "FPS", "e2e mean", "e2e p99", "e2e FPS"):
        table.add_column(name, justify="right")
    table.add_column(f"x vs {reports[reference].settings['format']}", justify="right")
    for report, speedup in zip(reports, speedups(reports, reference)):
        s, e, x = report.settings, report.engine, report.end_to_end
        table.add_row(Path(s["model"]).name, f"{s['format']} {s['precision']}", _fmt(s["file_size_mb"], 1),
                      _runs_on(s), _fmt(e.min_ms), _fmt(e.mean_ms), _fmt(e.median_ms), _fmt(e.p90_ms),
                      _fmt(e.p99_ms), _fmt(e.std_ms), _fmt(e.fps, 1), _fmt(x.mean_ms), _fmt(x.p99_ms),
                      _fmt(x.fps, 1), f"{speedup:.2f}x")
    return table


def validation_table(result: dict[str, Any]) -> Table:
    """Per-class IoU and the mIoU of one validation run."""
    title = f"{result['model']} ({result['precision']}) on {result['images']} images"
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    table.add_column("boundary IoU %", justify="right")
    for name, iou in result["iou"].items():
        boundary = result["boundary_iou"][name]
        table.add_row(name, _fmt(None if iou is None else 100 * iou), _fmt(None if boundary is None else 100 * boundary))
    table.add_section()
    table.add_row("[bold]mIoU[/]", f"[bold]{100 * result['miou']:.2f}[/]",
                  f"[bold]{_fmt(100 * result['boundary_miou'])}[/]")
    table.add_row("pixel accuracy", _fmt(100 * result["pixel_acc"]), "")
    if result.get("torch_miou") is not None:
        table.add_row("PyTorch mIoU (metadata)", _fmt(100 * result["torch_miou"]), "")
    return table


def parity_table(report: ParityReport, title: str) -> Table:
    """The parity statistics with the tolerance each is judged against."""
    table = Table(title=title, title_justify="left")
    for name in ("statistic", "value", "tolerance"):
        table.add_column(name, justify="right" if name != "statistic" else "left")
    table.add_row("images / pixels", f"{report.images} / {report.pixels}", report.precision)
    table.add_row("argmax agreement %", _fmt(report.agreement, 3), f">= {report.min_agreement}")
    table.add_row("reference mIoU", _fmt(report.reference_miou), "")
    table.add_row("candidate mIoU", _fmt(report.candidate_miou), "")
    table.add_row("mIoU difference (points)", _fmt(report.miou_diff), f"<= {report.max_miou_drop}")
    table.add_row("boundary mIoU ref / candidate", f"{_fmt(report.reference_boundary_miou)} / "
                  f"{_fmt(report.candidate_boundary_miou)}", "")
    table.add_row("boundary mIoU difference", _fmt(report.boundary_miou_diff), "")
    table.add_row("max |logit error|", _fmt(report.max_abs_error, 5), "")
    table.add_row("mean |logit error|", _fmt(report.mean_abs_error, 6), "")
    return table


def stream_table(source: str, summary: dict[str, Any], written: Sequence[Path], stopped_by: str | None) -> Table:
    """The summary of one video, camera or stream run (StreamStats.to_dict()) and the files it wrote."""
    title = f"{source}" + (f" · stopped by {stopped_by}" if stopped_by else "")
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("frames written", str(summary["frames"]))
    table.add_row("frames dropped (stale)", str(summary["dropped"]))
    table.add_row("seconds", _fmt(summary["seconds"], 1))
    table.add_row("FPS", _fmt(summary["fps"], 2))
    table.add_row("latency p50 / p99 ms", f"{_fmt(summary['latency_p50_ms'], 1)} / "
                  f"{_fmt(summary['latency_p99_ms'], 1)}")
    for path in written:
        table.add_row("wrote", str(path))
    return table


def video_bench_table(rows: Sequence[dict[str, Any]], host: str) -> Table:
    """Per model: FPS of the engine alone, the sequential and the concurrent pipeline, and their ratios."""
    first = rows[0]
    title = (f"frames per second · {first['frames']} frames of {first['size'][0]}x{first['size'][1]} · median of "
             f"{first['rounds']} interleaved rounds · host {host} · pipeline = decode, segment, overlay, encode")
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for name in ("engine", "sequential", "concurrent", "conc/seq", "conc/engine"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(Path(row["model"]).name, _fmt(row["engine_fps"]), _fmt(row["sequential_fps"]),
                      _fmt(row["concurrent_fps"]), f"{row['concurrent_vs_sequential']:.2f}x",
                      f"{row['concurrent_vs_engine']:.2f}x")
    return table
