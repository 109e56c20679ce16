"""ONNX -> TensorRT engine, for both API generations.

TensorRT 10 (JetPack 6) builds weakly typed networks: precision comes from builder flags and INT8 scales from a
calibrator. TensorRT 11 removed both: every network is strongly typed, so precision comes from the ONNX itself
(the FP16 ONNX for fp16, the Q/DQ INT8 ONNX for int8). The plan is saved as TensorRT wrote it (trtexec can
load it) with a JSON sidecar beside it that carries the metadata and the build options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rdd_deploy.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from rdd_deploy.errors import RDDError
from rdd_deploy.export.formats import console, reported
from rdd_deploy.export.graph import INPUT_NAME, LAYOUTS
from rdd_deploy.export.quantize import ImageCalibrationReader
from rdd_deploy.export.verify import Runner, Verifier
from rdd_deploy.runtime.tensorrt_engine import TENSORRT_MISSING, sidecar_path

TRT10_CALIBRATORS = {"minmax": "IInt8MinMaxCalibrator", "entropy": "IInt8EntropyCalibrator2"}


def import_tensorrt() -> ModuleType:
    """The tensorrt module, or one RDDError line saying what to install where."""
    try:
        import tensorrt
    except ImportError:
        raise RDDError(TENSORRT_MISSING) from None
    return tensorrt


def trt_major(trt: ModuleType) -> int:
    """TensorRT's major version; versions before 10 (pre name-based I/O API) are refused."""
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise RDDError(f"TensorRT {trt.__version__} is too old: rdd-deploy needs TensorRT 10 or newer")
    return major


@dataclass(frozen=True)
class BuildPlan:
    """What to build and how, decided from the TensorRT version alone (so it is testable without a GPU)."""

    major: int
    source: str  # which exported ONNX to parse: "fp32", "fp16" or "int8"
    builder_flags: tuple[str, ...] = ()
    calibrator: str | None = None

    @property
    def api(self) -> str:
        """How precision is chosen, for logs and the sidecar."""
        if self.major >= 11:
            return f"TensorRT {self.major}: strongly typed, precision from the {self.source} ONNX"
        return f"TensorRT {self.major}: builder flags {list(self.builder_flags) or 'none'}"


def plan_build(major: int, precision: str, calib_method: str) -> BuildPlan:
    """Pick the ONNX to parse, builder flags and calibrator for `precision` on TensorRT `major`."""
    if major >= 11:
        # Every network is strongly typed: the FP16 ONNX or the Q/DQ INT8 ONNX carries the precision.
        return BuildPlan(major, precision)
    if precision == "fp32":
        return BuildPlan(major, "fp32")
    if precision == "fp16":
        return BuildPlan(major, "fp32", builder_flags=("FP16",))
    if calib_method not in TRT10_CALIBRATORS:
        raise RDDError(f"TensorRT {major} calibrates with {' or '.join(TRT10_CALIBRATORS)}, not {calib_method}; "
                       "choose --calib-method minmax or entropy")
    # FP16 beside INT8: layers without an INT8 kernel fall back to FP16 rather than FP32.
    return BuildPlan(major, "fp32", builder_flags=("INT8", "FP16"), calibrator=TRT10_CALIBRATORS[calib_method])


def profile_dims(input_size: tuple[int, int], batch: int) -> dict[str, tuple[int, int, int]]:
    """(N, H, W) min/opt/max of a dynamic engine: batch 1..N, H and W from half the export size up to it."""
    h, w = input_size
    low = (1, max(32, h // 2 // 8 * 8), max(32, w // 2 // 8 * 8))
    return {"min": low, "opt": (batch, h, w), "max": (batch, h, w)}


def input_shape(nhw: tuple[int, int, int], layout: str) -> tuple[int, int, int, int]:
    """The 4-D input shape for (N, H, W) in the model's input layout."""
    n, h, w = nhw
    return (n, h, w, 3) if layout == LAYOUTS[True] else (n, 3, h, w)


def make_calibrator(trt: ModuleType, kind: str, reader: ImageCalibrationReader, device: str = "cuda") -> Any:
    """A TensorRT 10 calibrator (`kind` is its base class name) that feeds `reader`'s batches from GPU memory."""
    import torch

    base = getattr(trt, kind)

    class Calibrator(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.index, self.buffer = 0, None

        def get_batch_size(self) -> int:
            return reader.batches[0].shape[0]

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(reader):
                return None
            # Kept on self: TensorRT reads the pointer after get_batch returns.
            self.buffer = torch.from_numpy(reader.batch_input(self.index)).to(device).contiguous()
            self.index += 1
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return None  # always calibrate from the images given: a cache would go stale when they change

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return Calibrator()


def engine_runner(trt: ModuleType, plan: bytes) -> Runner:
    """Run a serialized engine on the GPU through PyTorch CUDA tensors (name-based TensorRT 10/11 I/O API)."""
    import torch

    if not torch.cuda.is_available():
        raise RDDError("verifying a TensorRT engine needs PyTorch with CUDA; pass --no-verify to skip it")
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise RDDError("TensorRT cannot load the engine it just built (see its log above)")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    outputs = [name for name in ("logits", "mask") if name in names]

    def run(feed: np.ndarray) -> list[np.ndarray]:
        stream = torch.cuda.current_stream()
        source = torch.from_numpy(feed).cuda()
        context.set_input_shape(INPUT_NAME, tuple(feed.shape))
        context.set_tensor_address(INPUT_NAME, source.data_ptr())
        results = {}
        for name in outputs:
            dtype = torch.from_numpy(np.empty(0, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            results[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            context.set_tensor_address(name, results[name].data_ptr())
        if not context.execute_async_v3(stream.cuda_stream):
            raise RDDError("TensorRT failed to run the engine it just built")
        stream.synchronize()
        return [results[name].cpu().numpy() for name in outputs]

    return run


def device_info() -> tuple[str | None, str | None]:
    """(GPU name, compute capability "major.minor") of CUDA device 0, or Nones without PyTorch CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None, None
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def sidecar(metadata: dict[str, Any], trt: ModuleType, plan: BuildPlan, network: Any, source: Path,
            shapes: dict[str, tuple[int, ...]] | None, options: dict[str, Any]) -> dict[str, Any]:
    """The `X.engine.json` content: the ONNX metadata keys plus TensorRT, device, I/O and build options."""
    name, capability = device_info()
    return {
        **metadata, "tensorrt_version": trt.__version__, "device_name": name, "compute_capability": capability,
        "input_name": network.get_input(0).name,
        "output_names": [network.get_output(i).name for i in range(network.num_outputs)],
        "profiles": [] if shapes is None else [{"input": INPUT_NAME, **{k: list(v) for k, v in shapes.items()}}],
        "build": {"api": plan.api, "source_onnx": source.name, "builder_flags": list(plan.builder_flags),
                  "calibrator": plan.calibrator, **options},
    }


def _load_timing_cache(config: Any, path: Path | None) -> None:
    """Start from the timing cache at `path` when there is one (ignore_mismatch False: a foreign one is refused)."""
    cache = config.create_timing_cache(path.read_bytes() if path is not None and path.is_file() else b"")
    if not config.set_timing_cache(cache, False):
        # A cache from another GPU or TensorRT version is refused: start a fresh one rather than fail the build.
        console.print(f"[yellow]timing cache {path} does not match this GPU/TensorRT; starting a new one[/]")
        config.set_timing_cache(config.create_timing_cache(b""), False)


@reported("tensorrt")
def export_engine(onnx_files: dict[str, Path], path: str | Path, metadata: dict[str, Any], precision: str = "fp32",
                  batch: int = 1, workspace_gib: float = 4.0, timing_cache: Path | None = None,
                  calibration: ImageCalibrationReader | None = None, calib_method: str = "minmax",
                  verifier: Verifier | None = None, trt: ModuleType | None = None) -> Path:
    """Build `path` (+ `path`.json) from the exported ONNX files; `trt` defaults to the installed tensorrt."""
    trt = trt or import_tensorrt()
    path = Path(path)
    plan = plan_build(trt_major(trt), precision, calib_method)
    source = onnx_files[plan.source]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # No creation flags: TensorRT 10 then builds weakly typed (the builder flags choose precision) and TensorRT 11
    # always builds strongly typed (its STRONGLY_TYPED flag is deprecated and ignored).
    network = builder.create_network()
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors))
        raise RDDError(f"TensorRT cannot parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    layout, dims, shapes, profile = metadata["input_layout"], None, None, None
    if metadata["dynamic"]:
        dims = profile_dims(tuple(metadata["input_size"]), batch)
        shapes = {key: input_shape(nhw, layout) for key, nhw in dims.items()}
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(profile)
    if plan.calibrator is not None:
        if calibration is None:
            raise RDDError("TensorRT INT8 needs calibration images: pass --calib-data NAME:PATH")
        if profile is not None:
            config.set_calibration_profile(profile)  # calibration runs at this profile's opt shape
        config.int8_calibrator = make_calibrator(trt, plan.calibrator, calibration)
    _load_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RDDError(f"TensorRT could not build an engine from {source.name} (see its log above); "
                       "a larger --workspace may help")
    data = bytes(memoryview(serialized))
    options = {"precision": precision, "workspace_bytes": int(workspace_gib * (1 << 30)),
               "timing_cache": None if timing_cache is None else str(timing_cache),
               "calibration_images": None if plan.calibrator is None else len(calibration.batches) * batch}
    content = sidecar({**metadata, "precision": precision}, trt, plan, network, source, shapes, options)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        if verifier is not None:
            verifier.check(engine_runner(trt, data), precision, path.name, backend=f"TensorRT {trt.__version__}",
                           shapes=[dims["opt"], dims["min"]] if dims else verifier.shapes[:1])
        # The sidecar goes first: a plan never appears under its name without the metadata that describes it.
        atomic_write_text(sidecar_path(path), json.dumps(content, indent=2) + "\n")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return path
