"""Reduced-precision ONNX variants for ONNX Runtime (and for TensorRT 11's strongly typed builds): FP16 and INT8 QDQ."""

from __future__ import annotations

import contextlib
import io
import platform
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from rdd_deploy.atomic import atomic_path
from rdd_deploy.errors import RDDError
from rdd_deploy.export.formats import reported
from rdd_deploy.export.graph import check, set_metadata
from rdd_deploy.export.verify import Verifier, onnx_runner
from rdd_deploy.runtime.int8_targets import INT8_TARGETS, host_int8_target
from rdd_deploy.runtime.preprocess import InputBatches


class ImageCalibrationReader(InputBatches, CalibrationDataReader):
    """Real images in the model's input layout, one batch per item, for ORT's calibrators.

    Implements __len__/set_range so calibration can run batch by batch (see `calibrate`): ORT keeps every
    intermediate tensor of the batches it is given, which for 200 full-size images would not fit in memory.
    """

    def __init__(self, images: list[np.ndarray], input_size: tuple[int, int], batch: int, layout: str,
                 mean: tuple[float, ...], std: tuple[float, ...], input_name: str = "images",
                 channel_order: str = "RGB") -> None:
        InputBatches.__init__(self, images, input_size, batch, layout, mean, std, channel_order)
        self.input_name = input_name
        self.position, self.end = 0, len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Make `get_next` yield batches start_index .. end_index - 1 (ORT's name and signature)."""
        self.position, self.end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next input feed of the current range, None after its end."""
        if self.position >= self.end:
            return None
        self.position += 1
        return {self.input_name: self.batch_input(self.position - 1)}


@reported("onnx", "fp16")
def export_onnx_fp16(source: str | Path, path: str | Path, metadata: dict[str, Any],
                     verifier: Verifier | None = None) -> Path:
    """Convert a verified FP32 ONNX to FP16 weights and compute, keeping FP32 (or uint8) inputs and outputs."""
    # ONNX Runtime's maintained copy of the converter, not onnxconverter-common 1.16: that one leaves
    # Cast(to=FLOAT) nodes in FP32 (PSPNet's pooling matrices then feed FP32 into an FP16 MatMul) and turns a
    # graph output produced by a blocked Resize into FP16; both graphs fail onnx.checker.
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    path = Path(path)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # one warning per tiny weight clamped to FP16's smallest normal value
        # keep_io_types: callers and the runtime feed float32/uint8 and read float32 whatever the precision.
        # Resize keeps FP32 scales; there is no Softmax in the graph, so no FP16 exp overflow to guard against.
        half = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        graph = OnnxModel(half)
        graph.topological_sort()  # the converter appends its input casts at the end of the node list
    half = graph.model
    check(half, f"FP16 graph for {path.name}")
    set_metadata(half, {**metadata, "precision": "fp16"})
    with atomic_path(path) as tmp:
        onnx.save(half, str(tmp))
        if verifier is not None:
            verifier.check(onnx_runner(tmp), "fp16", path.name)
    return path


# Calibrator settings per method. ORT's entropy default (128 histogram bins for 128 quantised bins) leaves a single
# candidate threshold, i.e. plain min/max, and quantize_static cannot change it: hence our own calibration pass.
# TensorRT uses 2048 bins, but ORT's threshold search is Python, quadratic in the bins and run per tensor (48 s
# for a small MobileNetV2 at 512 bins, measured); 256 bins still offers 65 clipping thresholds.
CALIBRATORS = {"minmax": ("MinMax", {}), "entropy": ("Entropy", {"num_bins": 256, "num_quantized_bins": 128}),
               "percentile": ("Percentile", {"num_bins": 2048, "percentile": 99.999})}


def calibrate(model_path: Path, reader: ImageCalibrationReader, method: str, scratch: Path,
              symmetric: bool = True) -> dict[str, tuple]:
    """Activation ranges {tensor: (min, max)} from real images, one batch in memory at a time."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    name, options = CALIBRATORS[method]
    calibrator = create_calibrator(model_path, augmented_model_path=str(scratch / "augmented.onnx"),
                                   calibrate_method=getattr(CalibrationMethod, name),
                                   extra_options={"symmetric": symmetric, **options})
    # ORT holds every intermediate tensor of the batches one collect_data call sees; ranges and histograms
    # merge across calls, so feeding one batch per call bounds memory whatever the number of images.
    with contextlib.redirect_stdout(io.StringIO()):  # ORT print()s progress lines for histogram methods
        for index in range(len(reader)):
            reader.set_range(index, index + 1)
            calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
    return {tensor: tuple(data.range_value) for tensor, data in ranges.items()}


def _fold_activation_ranges(model: onnx.ModelProto, ranges: dict[str, tuple]) -> None:
    """Give a Relu/Clip input its output's range, in place, as ORT does for calibrated (not overridden) ranges.

    QDQ folds Conv -> Relu into one quantised Conv whose output range is the Relu's; an override with the
    pre-activation range would size the scale for large negative values that the Relu removes.
    """
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    for node in model.graph.node:
        if node.op_type in ("Relu", "Clip") and consumers.get(node.input[0]) == 1 and node.output[0] in ranges:
            ranges[node.input[0]] = ranges[node.output[0]]


@dataclass(frozen=True)
class QDQScheme:
    """How an INT8 QDQ graph is quantised, chosen for the device that will run it."""

    target: str  # an `--int8-for` name (rdd_deploy.runtime.int8_targets.INT8_TARGETS), recorded in the file
    activation_type: str  # onnxruntime.quantization.QuantType member name
    activation_symmetric: bool
    reduce_range: bool  # 7-bit weights

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready description for the file's `int8` metadata entry."""
        return {"target": self.target, "device": INT8_TARGETS[self.target], "activations": f"{self.activation_type} "
                f"{'symmetric' if self.activation_symmetric else 'asymmetric'}", "weights": "QInt8 symmetric "
                f"per-channel{', 7-bit (reduce_range)' if self.reduce_range else ''}"}


# ONNX Runtime's guidance for its CPU provider, per device ("Quantize ONNX Models"): U8S8 (unsigned asymmetric
# activations, signed symmetric per-channel weights) on every CPU, because asymmetric uint8 lets ORT fold each Relu
# into the preceding quantised output (with symmetric int8 activations the Relu stays a float op between
# DequantizeLinear and QuantizeLinear, and so does the Conv in front of it). x86-64 without VNNI runs U8S8 through
# VPMADDUBSW, whose 16-bit sums saturate: ORT then recommends 7-bit weights (reduce_range), which VNNI CPUs and
# arm64 do not need. TensorRT takes only symmetric signed INT8 (zero point 0), TensorRT 11's strongly typed build too.
SCHEMES = {"x86-vnni": QDQScheme("x86-vnni", "QUInt8", False, False),
           "x86": QDQScheme("x86", "QUInt8", False, True),
           "arm64": QDQScheme("arm64", "QUInt8", False, False),
           "tensorrt": QDQScheme("tensorrt", "QInt8", True, False)}
TENSORRT_SCHEME = SCHEMES["tensorrt"]


def host_scheme() -> QDQScheme:
    """The scheme for ONNX Runtime on this host's CPU."""
    target = host_int8_target()
    if target is None:
        raise RDDError(f"no INT8 scheme for a {platform.machine()} CPU: pass --int8-for "
                       f"({', '.join(INT8_TARGETS)}) for the device that will run the file")
    return SCHEMES[target]


def quantize_int8(source: Path, output: Path, reader: ImageCalibrationReader, method: str,
                  scheme: QDQScheme | None = None) -> None:
    """Static INT8 QDQ quantisation, weights per channel, by `scheme` (default: this host's CPU); ranges from
    `reader` with minmax/entropy/percentile."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    scheme = scheme or host_scheme()
    with tempfile.TemporaryDirectory(prefix="rdd-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference + graph optimisation first, as ORT recommends: better QDQ placement, fewer Q/DQ pairs.
        quant_pre_process(str(source), str(prepared))
        ranges = calibrate(prepared, reader, method, Path(scratch), scheme.activation_symmetric)
        # quantize_static offers no way to set the histogram size, so our ranges go in as overrides; its own
        # (min/max) pass then only needs one batch.
        graph = onnx.load(str(prepared))
        _fold_activation_ranges(graph, ranges)
        overrides = {tensor: [{"rmin": np.float32(low), "rmax": np.float32(high)}]
                     for tensor, (low, high) in ranges.items()}
        # MatMul only appears in PSPNet's exact adaptive pooling: quantising those tiny products cost a trained
        # PSPNet-R18 6 points of argmax agreement (93.5 % instead of 99.3 %, measured) and saves no time.
        pooling = [node.name for node in graph.graph.node if node.op_type == "MatMul"]
        reader.set_range(0, 1)
        quantize_static(
            str(prepared), str(output), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=scheme.reduce_range, nodes_to_exclude=pooling,
            activation_type=getattr(QuantType, scheme.activation_type), weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": scheme.activation_symmetric, "WeightSymmetric": True,
                           "TensorQuantOverrides": overrides},
        )


@reported("onnx", "int8")
def export_onnx_int8(source: str | Path, path: str | Path, metadata: dict[str, Any], images: list[np.ndarray],
                     method: str = "minmax", verifier: Verifier | None = None,
                     scheme: QDQScheme | None = None) -> Path:
    """Quantise a verified FP32 ONNX to INT8 QDQ, calibrated on real `images` (HxWx3 uint8), for `scheme`'s
    engine (default: ONNX Runtime on this host's CPU)."""
    path = Path(path)
    if not images:
        raise RDDError("INT8 calibration needs images: pass --calib-data NAME:PATH (e.g. --calib-data synthetic)")
    model = onnx.load(str(source))
    input_dims = model.graph.input[0].type.tensor_type.shape.dim
    batch = input_dims[0].dim_value or 1  # dim_value is 0 for a dynamic axis: calibrate one image at a time
    reader = ImageCalibrationReader(images, tuple(metadata["input_size"]), batch, metadata["input_layout"],
                                    tuple(metadata["mean"]), tuple(metadata["std"]), model.graph.input[0].name,
                                    metadata["channel_order"])
    with tempfile.TemporaryDirectory(prefix="rdd-int8-") as scratch:
        quantized_path = Path(scratch) / "int8.onnx"
        scheme = scheme or host_scheme()
        quantize_int8(Path(source), quantized_path, reader, method, scheme)
        quantized = onnx.load(str(quantized_path))
    check(quantized, f"INT8 graph for {path.name}")
    set_metadata(quantized, {**metadata, "precision": "int8",
                             "calibration": {"method": method, "images": len(images)},
                             "int8": scheme.to_metadata()})
    with atomic_path(path) as tmp:
        onnx.save(quantized, str(tmp))
        if verifier is not None:
            # A file for another device is checked as its QDQ graph computes, not as this CPU's integer kernels do:
            # x86 without VNNI saturates the 8-bit weights that a VNNI or arm64 CPU multiplies exactly.
            elsewhere = scheme.target != host_int8_target()  # TensorRT multiplies exactly too
            verifier.check(onnx_runner(tmp, float_qdq=elsewhere), "int8", path.name)
    return path
