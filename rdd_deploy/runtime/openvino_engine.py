"""OpenVINO backend: the same ONNX files (FP32, FP16, INT8 QDQ) compiled for the CPU, at a chosen inference precision.

OpenVINO reads the ONNX file itself and keeps its metadata_props under rt_info["framework"], so neither torch nor
onnx is imported. On CPUs with AVX-512 BF16 or AMX, OpenVINO's default inference precision is bf16, not f32: here
the hint is always set explicitly and reported, so a bf16 timing is never mistaken for an f32 one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.engine import host_description

OPENVINO_MISSING = "OpenVINO is not installed: pip install 'rdd-deploy[openvino]'"
# --precision-hint -> the precision the computation runs at, in the metadata's (and parity tolerances') words
PRECISION_HINTS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
# Coarsest last: an INT8 or FP16 file stays what it is under a finer hint, an FP32 file runs at the hint's precision.
_COARSENESS = ("fp32", "fp16", "bf16", "int8")
_OV_TYPES = {"f32": np.float32, "f16": np.float16, "u8": np.uint8}


def compute_precision(file_precision: str, hint: str) -> str:
    """The precision a file of `file_precision` effectively runs at under OpenVINO's inference precision `hint`
    (an unknown file precision is returned as it is, for the metadata check to name)."""
    if file_precision not in _COARSENESS:
        return file_precision
    return max(file_precision, PRECISION_HINTS[hint], key=_COARSENESS.index)


def import_openvino() -> Any:
    """The openvino module, or one line naming the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise RDDError(OPENVINO_MISSING) from None
    return openvino


def cpu_capabilities() -> list[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU plugin (e.g. FP32, BF16, INT8); empty without openvino."""
    try:
        import openvino
    except ImportError:
        return []
    return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVINOEngine:
    """An ov.CompiledModel on the CPU behind the Engine interface; one reusable infer request."""

    backend = "openvino"

    def __init__(self, path: Path, precision_hint: str = "f32") -> None:
        ov = import_openvino()
        if precision_hint not in PRECISION_HINTS:
            raise RDDError(f"unknown OpenVINO precision hint '{precision_hint}'; "
                           f"choose one of {', '.join(PRECISION_HINTS)}")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises its own exception types for truncated or invalid files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise RDDError(f"cannot load ONNX model {path} with OpenVINO: {first}") from None
        if len(model.inputs) != 1:
            raise RDDError(f"{path} has {len(model.inputs)} inputs; an rdd-deploy model takes one image batch")
        metadata = self._file_metadata(model)
        file_precision = str(metadata.get("precision", "fp32")).strip('"')
        # The metadata describes the model as it runs: parity then judges a bf16 run by the bf16 tolerances.
        self.metadata = {**metadata, "precision": compute_precision(file_precision, precision_hint)}
        port = model.inputs[0]
        self.input_name = port.get_any_name()
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        element = port.get_element_type().get_type_name()
        if element not in _OV_TYPES:
            raise RDDError(f"{path}: input '{self.input_name}' has type {element}; expected f32, f16 or u8")
        self.input_dtype = np.dtype(_OV_TYPES[element])
        names = [output.get_names() for output in model.outputs]
        self._output = next((i for i, n in enumerate(names) if "logits" in n), 0)
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision_hint,
                                                          "PERFORMANCE_HINT": "LATENCY"})
        # The CPU plugin quietly swaps a hint its CPU lacks (f16 runs as bf16 on AVX-512 BF16 CPUs without
        # AVX-512 FP16): read back what it chose, and refuse rather than report the wrong precision.
        chosen = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if chosen != precision_hint:
            raise RDDError(f"OpenVINO runs precision hint '{precision_hint}' as '{chosen}' on this CPU "
                           f"({core.get_property('CPU', 'FULL_DEVICE_NAME')}); ask for --precision-hint {chosen}"
                           f"{' or f32' if chosen != 'f32' else ''}")
        self.request = self.compiled.create_infer_request()
        self.precision_hint = precision_hint
        self.provider = f"CPU {precision_hint}"
        self.device = f"{core.get_property('CPU', 'FULL_DEVICE_NAME')}, {host_description()}"
        self.shape_limits = None

    @staticmethod
    def _file_metadata(model: Any) -> dict[str, Any]:
        """The ONNX metadata_props, which OpenVINO's ONNX reader keeps as rt_info["framework"]."""
        if not model.has_rt_info(["framework"]):
            return {}
        return {key: value.astype(str) for key, value in model.get_rt_info(["framework"]).astype(dict).items()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One synchronous inference on the batch, cast to the model's input dtype; returns a copy of the logits."""
        self.request.infer({0: np.ascontiguousarray(batch, dtype=self.input_dtype)})
        return self.request.get_output_tensor(self._output).data.copy()
