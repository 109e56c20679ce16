"""Commands that write deployable files: export (ONNX, TensorRT) and engine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rdd_deploy.cli.options import console, flag, trt_calibrate_option
from rdd_deploy.errors import RDDError

app = typer.Typer()


@app.command("export")
def export_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Teacher, student or distillation checkpoint (.pt)."),
    trt: bool = flag(False, "--trt", help="Also build a TensorRT engine + .engine.json (needs a GPU)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or int8 (int8 needs --calib-data; its "
                                  "QDQ graph is tuned for the device --int8-for names)."),
    int8_for: Optional[str] = typer.Option(None, "--int8-for", help="The device that will run the int8 QDQ graph: "
                                           "x86-vnni, x86 (AVX2 without VNNI), arm64 (ONNX Runtime on that CPU) or "
                                           "tensorrt (default: tensorrt with --trt, else this host; `rdd-deploy "
                                           "doctor` names it)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW, multiples of 8 "
                                             "(default: the checkpoint's crop size, else 512x1024)."),
    batch: int = typer.Option(1, "--batch", help="Batch size (the maximum batch of a --dynamic engine)."),
    dynamic: bool = flag(False, "--dynamic", help="Dynamic batch, height and width."),
    fused_preprocess: bool = flag(False, "--fused-preprocess",
                                  help="Take raw uint8 NHWC RGB; normalisation runs inside the graph."),
    argmax: bool = flag(False, "--argmax", help="Add a 'mask' output: int32 argmax [N,H,W]."),
    calib_data: Optional[str] = typer.Option(None, "--calib-data", help="Data set NAME:PATH or synthetic: int8 "
                                             "calibrates on its train split; 4 val images join the verification."),
    calib_images: int = typer.Option(200, "--calib-images", help="Number of calibration images."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile."),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT builder workspace limit in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="TensorRT timing cache file "
                                                "(default: OUT/tensorrt.timing.cache; loaded, then updated)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: the checkpoint's folder)."),
    verify: bool = flag(True, "--verify/--no-verify", help="Check every file against PyTorch on real "
                                "images; a file below its parity tolerance is not written."),
    trt_calibrate: bool = trt_calibrate_option(),
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
    verify: bool = flag(True, "--verify/--no-verify", help="Compare the engine with ONNX Runtime on the "
                                "same ONNX file; an engine below its precision's tolerance is not written."),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT builder workspace limit in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="TensorRT timing cache file "
                                                "(default: OUT/tensorrt.timing.cache; loaded, then updated)."),
    trt_calibrate: bool = trt_calibrate_option(),
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
