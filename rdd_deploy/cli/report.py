"""`rdd-deploy report`: accuracy, parity and latency of every exported file on this host, and which one to ship."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rdd_deploy.cli.options import console, open_segmenter, parse_size, providers_option, val_samples
from rdd_deploy.errors import RDDError

app = typer.Typer()


@app.command("report")
def report_command(
    reference: Path = typer.Argument(..., help="The reference: the checkpoint (.pt) the files were exported from, "
                                     "or the FP32 ONNX file (then also a candidate)."),
    exported: list[Path] = typer.Argument(None, help="Exported files to compare (.onnx, .engine), e.g. the FP16 "
                                          "and INT8 exports."),
    data: str = typer.Option(..., "--data", help="Labelled data set NAME:PATH; its val split is scored."),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for report.json and report.html (or .md)."),
    fmt: str = typer.Option("html", "--format", help="html (one self-contained page) or md (Markdown for a CI "
                            "summary, also printed); report.json is always written."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1, help="Score the first N val images."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Latency input HxW (default: the first "
                                             "file's export size, else 512x1024)."),
    warmup: int = typer.Option(20, "--warmup", min=0), iters: int = typer.Option(200, "--iters", min=1),
    examples: int = typer.Option(4, "--examples", min=0, help="Val images drawn with their errors."),
    providers: Optional[str] = providers_option(),
) -> None:
    """Which exported file to ship on this host, and why: the fastest one that passes the parity gate (exit 1
    when none does)."""
    from rdd_deploy.runtime.report import FORMATS, build_report, open_runs, write_report
    from rdd_deploy.runtime.report.markdown import render_markdown
    if fmt not in FORMATS:
        raise RDDError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    is_checkpoint = reference.suffix.lower() in (".pt", ".pth")
    files = list(exported or []) if is_checkpoint else [reference, *(exported or [])]
    if not files:
        raise RDDError(f"{reference} is a checkpoint: name the exported files to compare with it after it")
    runs = open_runs(files, not is_checkpoint, providers.split(",") if providers else None)
    reference_segmenter = (open_segmenter(reference, "auto", None, like=runs[0].segmenter) if is_checkpoint
                           else runs[0].segmenter)
    checkpoint = None
    if is_checkpoint:
        from rdd_deploy.runtime.report.card import checkpoint_facts
        checkpoint = checkpoint_facts(reference)
    num_classes = runs[0].segmenter.info.num_classes
    ignore_index = val_samples(data, max_images, num_classes)[2]
    size = parse_size(input_size) if input_size else (runs[0].segmenter.info.input_size or (512, 1024))
    with console.status("measuring") as status:
        report, strips = build_report(reference_segmenter, str(reference), runs,
                                      lambda: val_samples(data, max_images, num_classes)[0], data, ignore_index,
                                      size, warmup, iters, checkpoint, examples, on_step=status.update)
    for path in write_report(report, strips, out, fmt):
        console.print(f"wrote {path}")
    if fmt == "md":
        print(render_markdown(report), end="")
    choice = report["recommendation"]
    if choice["run"] is None:  # like `parity`, a failed gate fails the command, for CI
        console.print(f"[bold red]ship none[/]: {choice['why']}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[bold green]ship {choice['name']}[/]: {choice['why']}", highlight=False, soft_wrap=True)
