"""Commands of the runtime-only install: doctor, bench, validate, parity, predict."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from rdd_deploy.cli.options import (backend_option, confusion_option, console, flag, json_option, open_segmenter,
                                    parse_size, precision_hint_option, progress_bar, providers_option, val_samples,
                                    write_confusion, write_json)
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.video import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from rdd_deploy.runtime import Segmenter
    from rdd_deploy.runtime.video_predict import StreamStats

app = typer.Typer()


@app.command("doctor")
def doctor_command(json_out: bool = flag(False, "--json", help="Print the report as JSON.")) -> None:
    """What the runtime can use on this host: ONNX Runtime, TensorRT, GPU, OpenVINO, CPU features, fast precisions."""
    from rdd_deploy.runtime.doctor import collect, format_report

    report = collect()
    if json_out:
        import json
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(format_report(report)))


@app.command("bench")
def bench_command(
    models: list[Path] = typer.Argument(..., help="Exported models (.onnx, .engine) and/or .pt checkpoints."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Test image HxW, e.g. 512x1024 "
                                             "(default: the first exported model's export size, else 512x1024)."),
    batch: int = typer.Option(1, "--batch", min=1), warmup: int = typer.Option(20, "--warmup", min=0),
    iters: int = typer.Option(200, "--iters", min=1), json_out: Optional[Path] = json_option("latency reports"),
    backend: str = typer.Option("auto", "--backend", help="auto (by file suffix), onnxruntime, openvino, "
                                "tensorrt, or all: every backend and OpenVINO precision this host runs."),
    providers: Optional[str] = providers_option(), precision_hint: str = precision_hint_option(),
    source: Optional[str] = typer.Option(None, "--source", help="A video file: frames per second of the engine "
                                         "alone, a sequential and the concurrent decode/segment/encode pipeline "
                                         "on its frames, interleaved (needs the [video] extra)."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Timed passes over the --source video per mode."),
) -> None:
    """Latency of each model, engine-only and end-to-end, interleaved, in one table; checkpoints run in PyTorch."""
    if source is not None:
        _bench_video(models, source, rounds, json_out, backend, providers, precision_hint)
        return
    from rdd_deploy.runtime.engine import available_runs
    from rdd_deploy.runtime.latency import benchmark_all, speedups
    from rdd_deploy.runtime.tables import bench_table, print_fitted
    runs = ([(path, b, hint) for path in models for b, hint in available_runs(path)] if backend == "all"
            else [(path, backend, precision_hint) for path in models])
    models = [path for path, _, _ in runs]
    segmenters = [open_segmenter(path, b, providers, precision_hint=hint) for path, b, hint in runs]
    if input_size is not None:
        size = parse_size(input_size)
    else:
        size = next((s.info.input_size for s in segmenters if s.engine.backend != "torch" and s.info.input_size),
                    (512, 1024))
    with console.status(f"timing {len(segmenters)} runs interleaved ({warmup} warm-up + {iters} rounds)"):
        reports = benchmark_all(segmenters, size, batch, warmup, iters, models)
    reference = next((i for i, s in enumerate(segmenters) if s.engine.backend == "torch"), 0)
    print_fitted(bench_table(reports, reference))
    results = [{**r.to_dict(), "speedup_vs_reference": x} for r, x in zip(reports, speedups(reports, reference))]
    write_json(json_out, {"reference": str(models[reference]), "results": results})


def _bench_video(models: list[Path], source: str, rounds: int, json_out: Optional[Path], backend: str,
                 providers: Optional[str], precision_hint: str) -> None:
    from rdd_deploy.runtime.engine import host_description
    from rdd_deploy.runtime.tables import print_fitted, video_bench_table
    from rdd_deploy.runtime.video import require_av
    from rdd_deploy.runtime.video_bench import bench_video
    require_av()
    segmenters = [open_segmenter(path, backend, providers, precision_hint=precision_hint) for path in models]
    with console.status(f"timing engine, sequential and concurrent pipeline on {source} ({rounds} rounds + warm-up)"):
        rows = bench_video(segmenters, source, rounds)
    print_fitted(video_bench_table(rows, host_description()))
    write_json(json_out, {"source": source, "host": host_description(), "results": rows})


@app.command("validate")
def validate_command(
    model: Path = typer.Argument(..., help="Exported model (.onnx, .engine)."),
    data: str = typer.Option(..., "--data", help="Data set as name:path, e.g. cityscapes:/data/cityscapes."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1, help="Validate on the first N images."),
    json_out: Optional[Path] = json_option("scores and the confusion matrix"),
    confusion: Optional[Path] = confusion_option(),
    backend: str = backend_option(), providers: Optional[str] = providers_option(),
    precision_hint: str = precision_hint_option(),
) -> None:
    """mIoU, per-class IoU and the confusion matrix of an exported model on a data set's val split."""
    from rdd_deploy.runtime.evaluate import evaluate
    from rdd_deploy.runtime.tables import print_fitted, validation_table
    segmenter = open_segmenter(model, backend, providers, precision_hint=precision_hint)
    samples, count, ignore_index = val_samples(data, max_images, segmenter.info.num_classes)
    with progress_bar() as progress:
        task = progress.add_task(f"validating {model.name}", total=count)
        result = evaluate(segmenter, samples, ignore_index, on_image=lambda: progress.advance(task))
    print_fitted(validation_table(result))
    write_json(json_out, {"data": data, **result})
    write_confusion(confusion, result)


@app.command("parity")
def parity_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "--reference", help="The reference: the PyTorch checkpoint "
                                    "(.pt) the model came from, or another exported model (e.g. the fp32 ONNX)."),
    model: Path = typer.Option(..., "--model", help="Exported model (.onnx, .engine)."),
    data: Optional[str] = typer.Option(None, "--data", help="name:path of a labelled data set (val split); "
                                       "default: scikit-image's sample photos, argmax agreement only."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1),
    json_out: Optional[Path] = json_option("parity report"),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", help="Percent of pixels whose argmax "
                                                  "must match (default by precision: fp32 99.9, fp16 99, "
                                                  "bf16 98.5, int8 97)."),
    max_miou_drop: Optional[float] = typer.Option(None, "--max-miou-drop", help="Largest allowed |mIoU difference| "
                                                  "in points (default by precision: fp32 0.1, fp16 0.5, "
                                                  "bf16 0.5, int8 1)."),
    backend: str = backend_option(), providers: Optional[str] = providers_option(),
    precision_hint: str = precision_hint_option(),
) -> None:
    """Same images through the reference (PyTorch or exported) and the model; exit 1 when a tolerance is broken."""
    from rdd_deploy.runtime.parity import compare, reference_photos
    from rdd_deploy.runtime.tables import parity_table, print_fitted
    candidate = open_segmenter(model, backend, providers, precision_hint=precision_hint)
    reference = open_segmenter(checkpoint, "auto", None, like=candidate)
    if data is not None:
        samples, count, ignore_index = val_samples(data, max_images, candidate.info.num_classes)
    else:
        samples, ignore_index = reference_photos()[:max_images], None
        count = len(samples)
    with progress_bar() as progress:
        task = progress.add_task(f"comparing {model.name} with {checkpoint.name}", total=count)
        report = compare(reference, candidate, samples, min_agreement, max_miou_drop, ignore_index,
                         on_image=lambda: progress.advance(task))
    print_fitted(parity_table(report, f"parity: {model.name} vs {checkpoint.name}"))
    write_json(json_out, {"checkpoint": str(checkpoint), "model": str(model), "data": data, **report.to_dict()})
    for failure in report.failures:
        console.print(f"[bold red]parity failed:[/] {failure}", highlight=False, soft_wrap=True)
    if not report.passed:
        raise typer.Exit(1)
    console.print("[bold green]parity passed[/]")


@app.command("predict")
def predict_command(
    model: Path = typer.Argument(..., help="Exported model (.onnx, .engine)."),
    sources: Optional[list[str]] = typer.Argument(None, help="Image files, folders of images (RGB; grayscale, "
                                                  "palette and alpha images are converted to RGB), videos ("
                                                  f"{', '.join(VIDEO_SUFFIXES)}), /dev/videoN cameras, or "
                                                  "rtsp/http(s) stream URLs."),
    out: Path = typer.Option(..., "--out", help="Folder for <name>.png palette masks; for a video, camera or "
                             "stream <name>_overlay.mp4 and <name>.jsonl (one line per frame)."),
    overlay: bool = flag(False, "--overlay", help="Also write <name>_overlay.png, the mask over the photo."),
    camera: Optional[int] = typer.Option(None, "--camera", min=0, help="Segment camera N (/dev/videoN)."),
    masks: bool = flag(False, "--masks", help="Videos: also write <name>_masks.mkv, lossless (FFV1) gray frames "
                       "whose pixel value is the class."),
    keep_all_frames: bool = flag(False, "--keep-all-frames", help="Cameras and streams: segment every frame "
                                 "instead of the newest one (frames then queue up behind a slow model)."),
    reconnect: int = typer.Option(0, "--reconnect", min=0, help="Cameras and streams: reopen one that stops, "
                                  "up to N times in a row, after 0.5, 1, 2 ... s."),
    backend: str = backend_option(), providers: Optional[str] = providers_option(),
    precision_hint: str = precision_hint_option(),
) -> None:
    """Class-index masks as palette PNGs (pixel value = class), optionally colour overlays; videos, cameras and
    streams give an overlay video, a JSONL per frame and, with --masks, a lossless mask video."""
    from rdd_deploy.runtime.masks import write_predictions
    from rdd_deploy.runtime.video import is_video_source
    sources = list(sources or []) + ([f"/dev/video{camera}"] if camera is not None else [])
    if not sources:
        raise RDDError("predict needs images, folders, videos, a stream URL or --camera N")
    videos = [s for s in sources if is_video_source(s)]
    images = [s for s in sources if not is_video_source(s)]
    if videos:
        from rdd_deploy.runtime.video import require_av
        require_av()
    segmenter = open_segmenter(model, backend, providers, precision_hint=precision_hint)
    if images:
        written = write_predictions(segmenter, images, out, overlay,
                                    warn=lambda note: console.print(f"[yellow]warning:[/] {note}", highlight=False,
                                                                    soft_wrap=True))
        console.print(f"wrote {len(written)} files to {out}")
    for video in videos:
        code = _predict_video(segmenter, video, out, masks, keep_all_frames, reconnect)
        if code:
            raise typer.Exit(code)


class _StatusLine:
    """A line redrawn in place on a terminal, or a plain line every few seconds in a pipe or log."""

    def __init__(self, name: str) -> None:
        self.name, self.shown = name, -float("inf")
        self.live = console.status(name) if console.is_terminal else None
        if self.live is not None:
            self.live.start()

    def update(self, stats: StreamStats) -> None:
        now = time.monotonic()
        if now - self.shown < (0.25 if self.live is not None else 5.0):
            return
        self.shown = now
        if self.live is not None:
            self.live.update(f"{self.name}: {stats.line()}")
        else:
            console.print(f"{self.name}: {stats.line()}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _predict_video(segmenter: Segmenter, source: str, out: Path, masks: bool, keep_all_frames: bool,
                   reconnect: int) -> int:
    """Segment one video, camera or stream; SIGINT/SIGTERM end it cleanly. Returns 0, or 128 + the signal."""
    from rdd_deploy.runtime.tables import print_fitted, stream_table
    from rdd_deploy.runtime.video_predict import VideoPrediction
    run = VideoPrediction(segmenter, source, out, masks, keep_all_frames or None, reconnect)
    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)
        run.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = _StatusLine(source)
    try:
        run.run(status.update)
    finally:
        status.close()
        written = run.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stopped_by = signal.Signals(received[0]).name if received else None
        print_fitted(stream_table(source, run.stats.to_dict(), written, stopped_by))
    return 128 + received[0] if received else 0
