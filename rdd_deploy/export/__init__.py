"""Export: checkpoint -> verified ONNX (FP32 / FP16 / INT8 QDQ) -> TensorRT engine + JSON sidecar.

One table of formats (`FORMATS`), one `export_<format>()` per format, each logged the same way and each
verified on real images before its file appears under the final name. Names are imported on first use: the
TensorRT half (`rdd-deploy engine`) runs on devices that have no PyTorch or onnx package.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "ExportOptions": "exporter", "check_input_size": "exporter", "export": "exporter", "parse_input_size": "exporter",
    "CALIBRATION_METHODS": "formats", "FORMATS": "formats", "PRECISIONS": "formats", "artifact_name": "formats",
    "DeployModel": "graph", "export_metadata": "graph", "export_onnx": "graph", "read_metadata": "graph",
    "revert_sync_batchnorm": "graph", "export_onnx_fp16": "quantize", "export_onnx_int8": "quantize",
    "BuildPlan": "tensorrt", "export_engine": "tensorrt", "plan_build": "tensorrt", "profile_dims": "tensorrt",
    "EngineOptions": "engine", "build_engine": "engine", "MIN_AGREEMENT": "verify", "Verifier": "verify",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
