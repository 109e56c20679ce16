"""The inference-engine interface the Segmenter drives, and choosing a backend for a model file."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rdd_deploy.errors import RDDError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")


class Engine(Protocol):
    """Runs a prepared network input batch and returns the logits; nothing about images or classes."""

    backend: str  # "onnxruntime", "openvino", "tensorrt" or "torch"
    provider: str  # what executes it: an ONNX Runtime provider, "CPU bf16" (OpenVINO), "TensorRT 10.x", "cpu"/"cuda"
    device: str  # the hardware it runs on, in words, for reports
    input_name: str
    input_shape: tuple[int | None, ...]  # None where a dimension is dynamic
    input_dtype: np.dtype
    shape_limits: tuple[tuple[int, ...], tuple[int, ...]] | None  # (min, max) input shape, where the engine has one
    metadata: dict[str, Any]  # raw metadata (ONNX metadata_props or sidecar), parsed by ModelInfo

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Feed one input batch; return the "logits" output (any float dtype)."""


def host_description() -> str:
    """The CPU this process runs on, in words: processor, architecture and core count."""
    processor = platform.processor() or platform.machine()
    return f"{processor} ({platform.machine()}, {os.cpu_count()} CPUs, {platform.system()})"


def model_format(path: str | os.PathLike) -> str:
    """'onnx', 'tensorrt' or 'pytorch' from a model file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    return {".onnx": "onnx", ".pt": "pytorch", ".pth": "pytorch"}.get(suffix, "unknown")


def open_engine(path: str | os.PathLike, backend: str = "auto", providers: list[str] | None = None,
                precision_hint: str = "f32") -> Engine:
    """Open an ONNX file with ONNX Runtime or OpenVINO (at `precision_hint`) or a serialized plan with TensorRT;
    one clear error for a bad choice."""
    path = Path(path)
    if backend not in BACKENDS:
        raise RDDError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise RDDError(f"model file not found: {path}")
    fmt = model_format(path)
    if fmt not in ("onnx", "tensorrt"):
        raise RDDError(f"{path}: unknown model format '{path.suffix}'; expected .onnx or a TensorRT plan "
                       f"({', '.join(ENGINE_SUFFIXES)})")
    if backend == "auto":
        backend = "onnxruntime" if fmt == "onnx" else "tensorrt"
    if precision_hint != "f32" and backend != "openvino":
        raise RDDError(f"precision hint '{precision_hint}' is an OpenVINO setting; add --backend openvino "
                       f"(the {backend} backend runs the file's own precision)")
    if backend == "tensorrt":
        if fmt != "tensorrt":
            raise RDDError(f"{path}: the tensorrt backend runs serialized engines ({', '.join(ENGINE_SUFFIXES)}); "
                           "build one with `rdd-deploy export --trt`, or run the ONNX file with onnxruntime "
                           "(providers=['TensorrtExecutionProvider'])")
        from rdd_deploy.runtime.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(path)
    if fmt != "onnx":
        raise RDDError(f"{path}: {backend} runs .onnx files; a TensorRT plan needs backend 'tensorrt'")
    if backend == "openvino":
        from rdd_deploy.runtime.openvino_engine import OpenVINOEngine

        return OpenVINOEngine(path, precision_hint)
    from rdd_deploy.runtime.onnxruntime_engine import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, providers)


def available_runs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Every (backend, OpenVINO precision hint) this host can run `path` with, for `bench --backend all`.

    ONNX files run with ONNX Runtime (its best provider here) and, where openvino is installed, with OpenVINO at
    f32 plus bf16 and f16 where the CPU plugin reports them; plans with TensorRT; checkpoints with PyTorch.
    """
    if model_format(path) != "onnx":
        return [("auto", "f32")]
    from rdd_deploy.runtime.openvino_engine import cpu_capabilities

    capabilities = cpu_capabilities()
    hints = ["f32"] * bool(capabilities) + [h for h, c in (("bf16", "BF16"), ("f16", "FP16")) if c in capabilities]
    return [("onnxruntime", "f32")] + [("openvino", hint) for hint in hints]
