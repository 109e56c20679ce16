"""ONNX Runtime backend: TensorRT, CUDA, then CPU execution provider, whichever this build offers first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.engine import host_description

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


def choose_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """The user's providers (each must be available) or the preferred ones this build has, in order."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise RDDError(f"execution provider {missing[0]} is not available in this onnxruntime build "
                           f"(available: {', '.join(available)})")
        return list(requested)
    return [p for p in PREFERRED_PROVIDERS if p in available]


class OnnxRuntimeEngine:
    """An onnxruntime.InferenceSession behind the Engine interface."""

    backend = "onnxruntime"

    def __init__(self, path: Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # keep provider-fallback chatter out of the user's terminal
        # Idle intra-op threads spin by default and steal the cores that pre/post-processing (and PyTorch in
        # parity) need: on a 2-core CPU that made end-to-end latency 2x slower and the torch reference 50x slower.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        chosen = choose_providers(providers, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types for truncated or invalid files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise RDDError(f"cannot load ONNX model {path}: {first}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise RDDError(f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                           "an rdd-deploy model takes one image batch")
        self.input_name = inputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape)
        if inputs[0].type not in _ORT_TYPES:
            raise RDDError(f"{path}: input '{self.input_name}' has type {inputs[0].type}; "
                           "expected float, float16 or uint8")
        self.input_dtype = np.dtype(_ORT_TYPES[inputs[0].type])
        names = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in names else names[0]
        self.provider = self.session.get_providers()[0]
        self.device = host_description() if self.provider == "CPUExecutionProvider" else f"{self.provider} device 0"
        self.shape_limits = None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One session.run on the batch, cast to the model's input dtype; returns the logits output."""
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}
        return self.session.run([self.output_name], feed)[0]
