"""`rdd-deploy engine`: an exported ONNX file -> a TensorRT engine verified against ONNX Runtime, + JSON sidecar.

An engine only loads on the GPU model and TensorRT version that built it, so it is built where it runs (a Jetson)
from the ONNX file exported on a workstation. Nothing here needs PyTorch or the onnx package: the metadata comes
from ONNX Runtime, the build from TensorRT, device memory from cuda-python. `export --trt` ends with this code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rdd_deploy.atomic import atomic_path, atomic_write_text
from rdd_deploy.errors import RDDError
from rdd_deploy.export.formats import PRECISIONS, artifact_name, reported
from rdd_deploy.export.tensorrt import Dims, build_plan, plan_build, profile_dims, trt_major
from rdd_deploy.export.verify import Verifier, onnx_reference
from rdd_deploy.runtime.images import image_files, load_image
from rdd_deploy.runtime.model_info import ModelInfo, decode_metadata
from rdd_deploy.runtime.preprocess import InputBatches
from rdd_deploy.runtime.tensorrt_engine import (TensorRTEngine, gpu_properties, import_cudart, import_tensorrt,
                                                sidecar_path)


@dataclass
class EngineOptions:
    """How to build: the engine precision, its shapes, builder limits and (TensorRT 10 only) calibration."""

    precision: str | None = None  # None: the ONNX file's own precision
    profile: Dims | None = None  # (N, H, W) min/opt/max of a dynamic engine; None: from the export size and batch
    batch: int = 1  # the largest batch of a dynamic engine when `profile` is None
    workspace_gib: float = 4.0
    timing_cache: Path | None = None  # None: <out>/tensorrt.timing.cache
    implicit_int8: bool = False  # TensorRT 10: calibrate the FP32 ONNX with TensorRT's own calibrator
    calib_method: str = "minmax"
    calib_images: list[np.ndarray] | None = None  # HxWx3 uint8 images for implicit calibration


def read_onnx_metadata(path: Path) -> tuple[dict[str, Any], ModelInfo, tuple[int | str | None, ...]]:
    """(native metadata, parsed ModelInfo, input shape) of an ONNX file, read with ONNX Runtime."""
    import onnxruntime as ort

    if not path.is_file():
        raise RDDError(f"ONNX file not found: {path}")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RDDError(f"cannot load ONNX model {path}: {first}") from None
    props = dict(session.get_modelmeta().custom_metadata_map)
    info = ModelInfo.parse(props, str(path))  # refuses files that rdd-deploy did not export, in one line
    metadata = decode_metadata(props)
    if info.input_size is None or "dynamic" not in metadata:
        raise RDDError(f"{path}: metadata 'input_size' or 'dynamic' is missing; re-export it with `rdd-deploy export`")
    return metadata, info, tuple(session.get_inputs()[0].shape)


def load_images(paths: list[Path]) -> list[np.ndarray]:
    """The RGB images of these files and folders (not recursive), as HxWx3 uint8 arrays."""
    return [load_image(path) for path in image_files(paths)]


def verification_photos(paths: list[Path]) -> list[np.ndarray]:
    """The images of `paths`, else scikit-image's photos (the ones `rdd-deploy export` verifies on)."""
    if paths:
        return load_images(paths)
    from rdd_deploy.export.images import sample_photos

    try:
        return sample_photos()
    except RDDError:
        raise RDDError("verification needs images: pass --data IMAGES (files or folders), pip install "
                       "scikit-image for the photos `export` verified on, or pass --no-verify") from None


def parse_profile(text: str) -> Dims:
    """"1x256x512:4x512x1024:4x512x1024" -> {"min": (1, 256, 512), "opt": ..., "max": ...} as N x H x W."""
    try:
        shapes = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(":")]
    except ValueError:
        shapes = []
    if len(shapes) != 3 or any(len(shape) != 3 or min(shape) < 1 for shape in shapes):
        raise RDDError(f"--dynamic must be MIN:OPT:MAX, each NxHxW (e.g. 1x256x512:4x512x1024:4x512x1024), "
                       f"got '{text}'")
    return dict(zip(("min", "opt", "max"), shapes))


def build_engine(onnx_path: str | Path, out: str | Path, options: EngineOptions,
                 photos: list[np.ndarray] | None) -> list[Path]:
    """Build, verify on `photos` (None: no verification) and write `<out>/<name>.engine` + its sidecar."""
    onnx_path, out = Path(onnx_path), Path(out)
    trt = import_tensorrt()
    cudart = import_cudart()
    metadata, info, shape = read_onnx_metadata(onnx_path)
    precision = options.precision or info.precision
    if precision not in PRECISIONS:
        raise RDDError(f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}")
    plan = plan_build(trt_major(trt), precision, info.precision, options.implicit_int8, options.calib_method)
    scheme = metadata.get("int8")
    if plan.source == "int8" and isinstance(scheme, dict) and "asymmetric" in str(scheme.get("activations")):
        # TensorRT's Q/DQ layers take signed INT8 with zero point 0 only: say so before its parser does.
        raise RDDError(f"{onnx_path.name} was quantised for {scheme.get('target')} (asymmetric uint8 activations), "
                       "which TensorRT cannot build: re-export it with `rdd-deploy export --precision int8 --int8-for tensorrt`")
    size = info.input_size
    dims = None
    if info.dynamic:
        dims = options.profile or profile_dims(size, options.batch)
    elif options.profile is not None:
        raise RDDError(f"{onnx_path} has a static input shape {list(shape)}: --dynamic needs an ONNX exported "
                       "with `rdd-deploy export --dynamic`")
    batch = dims["opt"][0] if dims else int(shape[0])
    path = out / artifact_name(info.model_name, size, info.dynamic, precision, "tensorrt")
    calibration = None
    if plan.calibrator is not None:
        if not options.calib_images:
            raise RDDError("--trt-calibrate needs calibration images: pass --calib-data")
        calib_size = dims["opt"][1:] if dims else size
        calibration = InputBatches(options.calib_images, calib_size, batch, info.input_layout, info.mean, info.std,
                                   info.channel_order)
    verifier = None
    if photos is not None:
        fused = info.input_layout == "NHWC_uint8"
        verifier = Verifier(onnx_reference(onnx_path, fused, info.mean, info.std, info.channel_order), photos,
                            info.mean, info.std, fused, [dims["opt"], dims["min"]] if dims else [(batch, *size)],
                            info.channel_order, reference_name=f"ONNX Runtime on {onnx_path.name}")

    @reported("tensorrt")
    def write() -> Path:
        workspace = int(options.workspace_gib * (1 << 30))
        timing_cache = options.timing_cache or out / "tensorrt.timing.cache"
        data, io = build_plan(trt, onnx_path, plan, info.input_layout, dims, workspace, timing_cache, calibration,
                              cudart)
        device_name, capability = gpu_properties(cudart)
        content = {**metadata, "precision": precision, "tensorrt_version": trt.__version__,
                   "device_name": device_name, "compute_capability": capability, **io,
                   "build": {"api": plan.api, "source_onnx": onnx_path.name, "builder_flags": list(plan.builder_flags),
                             "strongly_typed": plan.strongly_typed, "calibrator": plan.calibrator,
                             "calibration_images": None if calibration is None else len(calibration) * batch,
                             "workspace_bytes": workspace, "timing_cache": str(timing_cache)}}
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
            if verifier is not None:
                engine = TensorRTEngine(tmp, plan=data, metadata=content)
                try:
                    verifier.check(lambda feed: [engine.run(feed)], precision, path.name,
                                   backend=f"TensorRT {trt.__version__}")
                finally:
                    engine.close()
            # The sidecar goes first: a plan never appears under its name without the metadata that describes it.
            atomic_write_text(sidecar_path(path), json.dumps(content, indent=2) + "\n")
        return path

    return [write(), sidecar_path(path)]
