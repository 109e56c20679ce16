"""ONNX -> serialized TensorRT engine, for both API generations; needs TensorRT and cuda-python, never PyTorch.

TensorRT 10 (JetPack 6 ships 10.3) builds weakly typed networks, where builder flags choose precision and a
calibrator finds INT8 scales, or strongly typed ones, where the ONNX tensor types and Q/DQ nodes do. TensorRT 11
removed the precision flags and the calibrators: every network is strongly typed. So FP16 and INT8 engines build
from the FP16 and the Q/DQ INT8 ONNX files, which ONNX Runtime runs too; on TensorRT 10 an FP16 engine may also
come from the FP32 ONNX with the FP16 flag, and an INT8 one from TensorRT's own calibration (`--trt-calibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rdd_deploy.atomic import atomic_write_bytes
from rdd_deploy.errors import RDDError
from rdd_deploy.export.formats import console
from rdd_deploy.runtime.preprocess import InputBatches
from rdd_deploy.runtime.tensorrt_engine import check_cuda, shared_logger

TRT10_CALIBRATORS = {"minmax": "IInt8MinMaxCalibrator", "entropy": "IInt8EntropyCalibrator2"}
Dims = dict[str, tuple[int, ...]]  # "min"/"opt"/"max" -> a shape


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
    precision: str  # the engine's: "fp32", "fp16" or "int8"
    source: str  # the precision of the ONNX file parsed
    strongly_typed: bool
    builder_flags: tuple[str, ...] = ()
    calibrator: str | None = None

    @property
    def api(self) -> str:
        """How precision is chosen, for logs and the sidecar."""
        if self.strongly_typed:
            return f"TensorRT {self.major}: strongly typed, precision from the {self.source} ONNX"
        calibration = f", implicit INT8 calibration ({self.calibrator})" if self.calibrator else ""
        return f"TensorRT {self.major}: builder flags {list(self.builder_flags) or 'none'}{calibration}"


def source_precision(major: int, precision: str, implicit_int8: bool = False) -> str:
    """Which exported ONNX file (by precision) an engine of `precision` is built from by `rdd-deploy export`."""
    if major < 11 and (precision == "fp16" or implicit_int8):
        return "fp32"  # TensorRT 10 picks FP16 per layer (or calibrates) from the FP32 graph, as trtexec --fp16 does
    return precision


def plan_build(major: int, precision: str, source: str, implicit_int8: bool = False,
               calib_method: str = "minmax") -> BuildPlan:
    """The network typing, builder flags and calibrator for a `precision` engine from a `source` ONNX."""
    if implicit_int8:
        if major >= 11:
            raise RDDError(f"TensorRT {major} removed implicit INT8 calibration: build from the Q/DQ INT8 ONNX "
                           "(`rdd-deploy export --precision int8`) without --trt-calibrate")
        if precision != "int8" or source != "fp32":
            raise RDDError(f"--trt-calibrate calibrates the FP32 ONNX into an int8 engine, not {source} into "
                           f"{precision}")
        if calib_method not in TRT10_CALIBRATORS:
            raise RDDError(f"TensorRT {major} calibrates with {' or '.join(TRT10_CALIBRATORS)}, not {calib_method}; "
                           "choose --calib-method minmax or entropy")
        # FP16 beside INT8: layers without an INT8 kernel fall back to FP16 rather than FP32.
        return BuildPlan(major, "int8", "fp32", False, ("INT8", "FP16"), TRT10_CALIBRATORS[calib_method])
    if precision == source:
        # Strong typing runs each layer in the ONNX file's own types, the ones ONNX Runtime runs: parity carries over.
        return BuildPlan(major, precision, source, strongly_typed=major >= 11 or precision != "fp32")
    if major < 11 and (source, precision) == ("fp32", "fp16"):
        return BuildPlan(major, "fp16", "fp32", False, ("FP16",))
    if precision == "int8":
        hint = "INT8 engines build from the Q/DQ INT8 ONNX (`rdd-deploy export --precision int8`)"
        if major < 11:
            hint += ", or from the FP32 ONNX with --trt-calibrate"
    elif precision == "fp16":
        hint = f"TensorRT {major} builds FP16 engines from the FP16 ONNX (`rdd-deploy export --precision fp16`)"
    else:
        hint = "fp32 engines build from the FP32 ONNX"
    raise RDDError(f"cannot build a {precision} engine from a {source} ONNX with TensorRT {major}: {hint}")


def profile_dims(input_size: tuple[int, int], batch: int) -> dict[str, tuple[int, int, int]]:
    """(N, H, W) min/opt/max of a dynamic engine: batch 1..N, H and W from half the export size up to it."""
    h, w = input_size
    low = (1, max(32, h // 2 // 8 * 8), max(32, w // 2 // 8 * 8))
    return {"min": low, "opt": (batch, h, w), "max": (batch, h, w)}


def input_shape(nhw: tuple[int, int, int], layout: str) -> tuple[int, int, int, int]:
    """The 4-D input shape for (N, H, W) in the model's input layout."""
    n, h, w = nhw
    return (n, h, w, 3) if layout == "NHWC_uint8" else (n, 3, h, w)


def make_calibrator(trt: ModuleType, kind: str, batches: InputBatches, cudart: Any) -> Any:
    """A TensorRT 10 calibrator (`kind` is its base class name) that feeds `batches` from one device buffer."""
    base = getattr(trt, kind)

    class Calibrator(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.index, self.pointer, self.error = 0, 0, None

        def get_batch_size(self) -> int:
            return batches.batches[0].shape[0]

        def get_batch(self, names: list[str]) -> list[int] | None:
            # TensorRT's trampoline prints and swallows an exception raised here, then ends calibration: the engine
            # would silently be calibrated on fewer images. Keep it for `build_plan` to raise after the build.
            try:
                if self.index >= len(batches):
                    return None
                feed = np.ascontiguousarray(batches.batch_input(self.index))
                if not self.pointer:
                    self.pointer = int(check_cuda(cudart, cudart.cudaMalloc(feed.nbytes), "cudaMalloc"))
                check_cuda(cudart, cudart.cudaMemcpy(self.pointer, feed.ctypes.data, feed.nbytes,
                                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
                self.index += 1
                return [self.pointer]
            except Exception as exc:  # noqa: BLE001 -- re-raised by build_plan once TensorRT returns
                self.error = exc
                return None

        def read_calibration_cache(self) -> bytes | None:
            return None  # always calibrate from the images given: a cache would go stale when they change

        def write_calibration_cache(self, cache: Any) -> None:
            return None

        def free(self) -> None:
            if self.pointer:
                check_cuda(cudart, cudart.cudaFree(self.pointer), "cudaFree")
                self.pointer = 0

    return Calibrator()


def attach_timing_cache(config: Any, path: Path | None) -> None:
    """Start from the timing cache at `path` when TensorRT accepts it, else from an empty one (with a warning)."""
    if path is not None and path.is_file():
        cache = config.create_timing_cache(path.read_bytes())
        if cache is None:  # TensorRT returns nullptr for a corrupt, truncated or foreign blob
            console.print(f"[yellow]timing cache {path} is corrupt or not a TensorRT timing cache; "
                          "starting a new one[/]", highlight=False, soft_wrap=True)
        elif config.set_timing_cache(cache, False):  # ignore_mismatch False: another GPU's timings are refused
            return
        else:
            console.print(f"[yellow]timing cache {path} comes from another GPU or TensorRT version; "
                          "starting a new one[/]", highlight=False, soft_wrap=True)
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise RDDError("TensorRT could not create an empty timing cache (see its log above)")


def add_profile(builder: Any, config: Any, name: str, shapes: Dims) -> Any:
    """Add the one optimization profile of a dynamic engine; RDDError when TensorRT refuses it."""
    profile = builder.create_optimization_profile()
    described = f"min {shapes['min']}, opt {shapes['opt']}, max {shapes['max']}"
    try:
        profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    except RuntimeError as exc:  # the binding raises when min <= opt <= max does not hold
        raise RDDError(f"TensorRT refuses the shapes of input '{name}' ({described}): {exc}") from None
    if config.add_optimization_profile(profile) < 0:
        raise RDDError(f"TensorRT refuses the optimization profile of input '{name}' ({described}); each shape "
                       "must match the network's rank and its static dimensions (see its log above)")
    return profile


def build_plan(trt: ModuleType, source: Path, plan: BuildPlan, layout: str, dims: Dims | None,
               workspace_bytes: int, timing_cache: Path | None = None, calibration: InputBatches | None = None,
               cudart: Any = None) -> tuple[bytes, dict[str, Any]]:
    """Parse `source`, build it as `plan` says; return the serialized engine and its I/O names and profile."""
    logger = shared_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed and plan.major < 11:  # TensorRT 11 is always strongly typed and ignores the flag
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors))
        raise RDDError(f"TensorRT cannot parse {source}: {errors}")
    io = {"input_name": network.get_input(0).name,
          "output_names": [network.get_output(i).name for i in range(network.num_outputs)], "profiles": []}
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = None
    if dims is not None:
        shapes = {key: input_shape(nhw, layout) for key, nhw in dims.items()}
        profile = add_profile(builder, config, io["input_name"], shapes)
        io["profiles"] = [{"input": io["input_name"], **{key: list(shape) for key, shape in shapes.items()}}]
    calibrator = None
    if plan.calibrator is not None:
        if calibration is None:
            raise RDDError("TensorRT INT8 calibration needs images: pass --calib-data")
        if profile is not None:
            config.set_calibration_profile(profile)  # calibration runs at this profile's opt shape
        calibrator = make_calibrator(trt, plan.calibrator, calibration, cudart)
        config.int8_calibrator = calibrator
    attach_timing_cache(config, timing_cache)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if calibrator is not None and calibrator.error is not None:
        error = calibrator.error
        raise RDDError(f"INT8 calibration failed on batch {calibrator.index + 1} of {len(calibration)}: "
                       f"{type(error).__name__}: {error}; no engine written") from error
    if serialized is None:
        raise RDDError(f"TensorRT could not build an engine from {source.name} (see its log above); "
                       "a larger --workspace may help")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized)), io
