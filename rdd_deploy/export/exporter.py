"""`export(checkpoint, options)`: checkpoint -> verified ONNX (fp32, then fp16/int8) -> optional TensorRT engine."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rdd_deploy.errors import RDDError
from rdd_deploy.export.formats import CALIBRATION_METHODS, PRECISIONS, artifact_name, console, human_size
from rdd_deploy.runtime.images import MIN_SIDE
from rdd_deploy.runtime.int8_targets import INT8_TARGETS

DEFAULT_INPUT_SIZE = (512, 1024)  # Cityscapes crops, the paper's main setting
SIDE_MULTIPLE = 8  # output stride


@dataclass
class ExportOptions:
    """Everything `rdd-deploy export` can be asked for; ONNX is always written (TensorRT builds from it)."""

    trt: bool = False
    precision: str = "fp32"
    input_size: tuple[int, int] | None = None  # None: the checkpoint's crop size, else 512x1024
    batch: int = 1
    dynamic: bool = False
    fused_preprocess: bool = False
    argmax: bool = False
    calib_data: str | None = None
    calib_images: int = 200
    calib_method: str = "minmax"
    out: Path | None = None  # None: the checkpoint's folder
    verify: bool = True
    workspace_gib: float = 4.0
    timing_cache: Path | None = None  # None: <out>/tensorrt.timing.cache
    trt_calibrate: bool = False  # TensorRT 10 only: an int8 engine calibrated by TensorRT, not from the Q/DQ ONNX
    int8_for: str | None = None  # an INT8_TARGETS name; None: tensorrt with --trt, else this host's CPU


def parse_input_size(text: str) -> tuple[int, int]:
    """"512x1024" -> (512, 1024); "512" -> (512, 512); anything else is an RDDError."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*", text)
    if not match:
        raise RDDError(f"--input-size must be HxW (e.g. 512x1024), got '{text}'")
    h = int(match.group(1))
    return h, int(match.group(2) or h)


def check_input_size(size: tuple[int, int]) -> tuple[int, int]:
    """H and W must be >= 32 and multiples of 8: the networks work at output stride 8.

    Other sizes still run and export exactly, but the stride-2 stages then round the feature grid, so the 1/8
    logits no longer line up with the pixels the model was trained on; TensorRT also prefers multiples of 8.
    """
    h, w = size
    if min(h, w) < MIN_SIDE or h % SIDE_MULTIPLE or w % SIDE_MULTIPLE:
        raise RDDError(f"input size {h}x{w} is not allowed: height and width must be >= {MIN_SIDE} "
                       f"and multiples of {SIDE_MULTIPLE} (e.g. 512x1024)")
    return h, w


def check_options(options: ExportOptions) -> None:
    """Reject impossible option combinations before any slow work starts."""
    if options.precision not in PRECISIONS:
        raise RDDError(f"unknown precision '{options.precision}'; choose one of: {', '.join(PRECISIONS)}")
    if options.calib_method not in CALIBRATION_METHODS:
        raise RDDError(f"unknown calibration method '{options.calib_method}'; "
                       f"choose one of: {', '.join(CALIBRATION_METHODS)}")
    if options.batch < 1:
        raise RDDError(f"--batch must be >= 1, got {options.batch}")
    if options.calib_images < 1:
        raise RDDError(f"--calib-images must be >= 1, got {options.calib_images}")
    if options.workspace_gib <= 0:
        raise RDDError(f"--workspace must be > 0 GiB, got {options.workspace_gib}")
    if options.precision == "int8" and options.calib_data is None:
        raise RDDError("int8 needs calibration images from the training data: pass --calib-data NAME:PATH "
                       "(e.g. --calib-data cityscapes:/data/cityscapes or --calib-data synthetic)")
    if options.int8_for not in (None, *INT8_TARGETS):
        raise RDDError(f"--int8-for must be one of: {', '.join(INT8_TARGETS)}, got '{options.int8_for}'")
    if options.int8_for not in (None, "tensorrt") and options.trt and not options.trt_calibrate:
        raise RDDError(f"--int8-for {options.int8_for} cannot go with --trt: TensorRT builds from the INT8 Q/DQ file "
                       "and takes only its symmetric INT8 (drop --int8-for, or add --trt-calibrate on TensorRT 10)")
    if options.input_size is not None:
        check_input_size(options.input_size)


def export(checkpoint: str | Path, options: ExportOptions) -> list[Path]:
    """Export a teacher, student or distillation checkpoint; return the files written, in order."""
    from rdd_deploy.checkpoint import load_checkpoint, model_from_checkpoint
    from rdd_deploy.export.engine import EngineOptions, build_engine
    from rdd_deploy.export.graph import export_metadata, export_onnx, revert_sync_batchnorm
    from rdd_deploy.export.images import dataset_images, verification_images
    from rdd_deploy.export.quantize import SCHEMES, export_onnx_fp16, export_onnx_int8, host_scheme
    from rdd_deploy.export.tensorrt import plan_build, source_precision, trt_major
    from rdd_deploy.export.verify import Verifier, check_shapes, torch_reference
    from rdd_deploy.models import FullResolution
    from rdd_deploy.runtime.tensorrt_engine import TENSORRT_MISSING, import_tensorrt

    check_options(options)
    trt = None
    if options.trt:
        try:
            trt = import_tensorrt()
        except RDDError:
            pass  # the ONNX files are useful on their own: write them, then report the missing TensorRT
    elif options.trt_calibrate:
        raise RDDError("--trt-calibrate only applies to a TensorRT engine: add --trt")
    source = options.precision
    if trt is not None:  # fail now, not after minutes of ONNX work, on a choice this TensorRT refuses
        major = trt_major(trt)
        source = source_precision(major, options.precision, options.trt_calibrate)
        plan_build(major, options.precision, source, options.trt_calibrate, options.calib_method)

    model, meta = model_from_checkpoint(checkpoint)
    model = revert_sync_batchnorm(model).eval()
    name = load_checkpoint(checkpoint)["model_spec"]["name"]  # model_from_checkpoint's meta has no model name
    size = check_input_size(options.input_size or tuple(meta.get("crop_size") or DEFAULT_INPUT_SIZE))
    out = Path(options.out) if options.out is not None else Path(checkpoint).parent
    metadata = export_metadata(meta, name, model.head.classifier.out_channels, size, options.dynamic,
                               options.fused_preprocess, "fp32")
    mean, std = tuple(metadata["mean"]), tuple(metadata["std"])

    verifier, photos = None, None
    if options.verify:
        photos = verification_images(options.calib_data)
        channel_order = metadata["channel_order"]
        verifier = Verifier(torch_reference(FullResolution(model).eval(), mean, std, channel_order), photos, mean,
                            std, options.fused_preprocess, check_shapes(size, options.batch, options.dynamic),
                            channel_order)
    images: list = []
    if options.precision == "int8":
        images = dataset_images(options.calib_data, "train", options.calib_images)

    def target(precision: str, fmt: str = "onnx") -> Path:
        return out / artifact_name(name, size, options.dynamic, precision, fmt)

    onnx_files = {"fp32": export_onnx(model, target("fp32"), metadata, options.batch, options.argmax, verifier)}
    if options.precision == "fp16":
        onnx_files["fp16"] = export_onnx_fp16(onnx_files["fp32"], target("fp16"), metadata, verifier)
    elif options.precision == "int8":
        # With --trt TensorRT builds from the QDQ file (unless it calibrates itself), and takes only symmetric INT8.
        tuned_for = options.int8_for or ("tensorrt" if options.trt and not options.trt_calibrate else None)
        scheme = SCHEMES[tuned_for] if tuned_for else host_scheme()
        onnx_files["int8"] = export_onnx_int8(onnx_files["fp32"], target("int8"), metadata, images,
                                              options.calib_method, verifier, scheme)
    written = list(onnx_files.values())
    if options.trt:
        if trt is None:
            raise RDDError(f"{TENSORRT_MISSING} (the ONNX files were written: "
                           f"{', '.join(path.name for path in written)})")
        written += build_engine(onnx_files[source], out, EngineOptions(
            options.precision, batch=options.batch, workspace_gib=options.workspace_gib,
            timing_cache=options.timing_cache, implicit_int8=options.trt_calibrate,
            calib_method=options.calib_method, calib_images=images or None), photos)
    files = ", ".join(f"{path} ({human_size(path.stat().st_size)})" for path in written)
    console.print(f"[bold green]Export complete[/]: {files}", highlight=False)
    return written

