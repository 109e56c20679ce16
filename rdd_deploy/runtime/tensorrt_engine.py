"""TensorRT backend (10.x and 11.x tensor API) with cuda-python device buffers and one reusable stream.

The plan file is the raw serialized engine; its metadata lives beside it in `<plan>.json` (the sidecar).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rdd_deploy.errors import RDDError

TENSORRT_MISSING = ("TensorRT is not installed: pip install 'rdd-deploy[trt]' (x86/CUDA) "
                    "or use the TensorRT that ships with JetPack on a Jetson")
NO_DRIVER = "no NVIDIA driver"
CUDA_PYTHON_MISSING = ("cuda-python is not installed: pip install 'cuda-python' with the major version of "
                       "your CUDA (e.g. 'cuda-python>=12,<13' for CUDA 12)")


def sidecar_path(plan: Path) -> Path:
    """Where the metadata of a plan file lives: `model.engine` -> `model.engine.json`."""
    return plan.with_name(plan.name + ".json")


def read_sidecar(plan: Path) -> dict[str, Any]:
    """Load the JSON sidecar of a plan file; one clear error when it is missing or not a JSON object."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise RDDError(f"{plan} has no metadata sidecar {path} (written by `rdd-deploy engine` or `export --trt`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RDDError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RDDError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


def import_tensorrt() -> ModuleType:
    """The tensorrt module, or one RDDError line saying what to install where."""
    try:
        import tensorrt
    except ImportError:
        raise RDDError(TENSORRT_MISSING) from None
    return tensorrt


@functools.cache
def shared_logger(trt: ModuleType) -> Any:
    """The process's one trt.Logger: TensorRT keeps the first logger it is given and warns about any other."""
    return trt.Logger(trt.Logger.WARNING)


def import_cudart() -> Any:
    """cuda-python's runtime bindings: `cuda.bindings.runtime` (12.6.1+), else the older `cuda.cudart`."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise RDDError(CUDA_PYTHON_MISSING) from None
    return cudart


def native_handle(cuda_object: Any) -> int:
    """The address behind a cuda-python handle (a stream): `get_cuda_native_handle` where cuda-bindings has it
    (12.9.1/13.0 deprecate int(handle)), int(handle) on the older releases that lack it."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(cuda_object)
    return int(get_cuda_native_handle(cuda_object))


def check_cuda(cudart: Any, result: tuple, what: str) -> Any:
    """Unpack a cuda-python call's (error, value...) tuple, raising RDDError on any CUDA error."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        name = getattr(err, "name", err)
        if name == "cudaErrorInsufficientDriver":  # what cuda-python 12.9+ returns where libcuda.so.1 is missing
            raise RDDError(f"{NO_DRIVER} ({what}: {name})")
        raise RDDError(f"CUDA call {what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count(cudart: Any) -> int:
    """How many CUDA devices this process sees; one RDDError line, starting "no NVIDIA driver", without a driver."""
    try:
        result = cudart.cudaGetDeviceCount()
    except RuntimeError as exc:  # cuda-python 12.6-12.8 raise "Failed to dlopen libcuda.so.1" where 12.9+ return
        if "libcuda" not in str(exc):
            raise
        raise RDDError(f"{NO_DRIVER} (cudaGetDeviceCount: {exc})") from None
    count = int(check_cuda(cudart, result, "cudaGetDeviceCount"))
    if count == 0:
        raise RDDError("no CUDA device: the NVIDIA driver lists none")
    return count


def gpu_properties(cudart: Any, device: int = 0) -> tuple[str, str]:
    """(name, compute capability "major.minor") of a CUDA device."""
    props = check_cuda(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip(chr(0)), f"{props.major}.{props.minor}"


class TensorRTEngine:
    """A deserialized TensorRT engine behind the Engine interface; buffers grow only when shapes grow."""

    backend = "tensorrt"

    def __init__(self, path: Path, plan: bytes | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Load `path` and its sidecar, or (export verification) the in-memory `plan` with its `metadata`."""
        trt = import_tensorrt()
        self._trt, self._cudart = trt, import_cudart()
        self.metadata = read_sidecar(path) if metadata is None else metadata
        device_count(self._cudart)
        gpu = "{} (compute capability {})".format(*gpu_properties(self._cudart))
        self.device, self.provider = gpu, f"TensorRT {trt.__version__}"
        self._runtime = trt.Runtime(shared_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes() if plan is None else plan)
        if self._engine is None:
            built = (f"TensorRT {self.metadata.get('tensorrt_version', '?')} on "
                     f"{self.metadata.get('device_name', '?')} (compute capability "
                     f"{self.metadata.get('compute_capability', '?')})")
            raise RDDError(f"TensorRT {trt.__version__} on {gpu} cannot load {path}, built with {built}: an engine "
                           "only loads on the GPU model and TensorRT version that built it (or the file is corrupt); "
                           "rebuild it here with `rdd-deploy engine MODEL.onnx`")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not self._outputs:
            raise RDDError(f"{path} has inputs {inputs} and outputs {self._outputs}; "
                           "an rdd-deploy engine takes one image batch and returns 'logits'")
        self.input_name = inputs[0]
        self.output_name = "logits" if "logits" in self._outputs else self._outputs[0]
        declared = tuple(self._engine.get_tensor_shape(self.input_name))
        self.input_shape = tuple(d if d > 0 else None for d in declared)
        self.input_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self.input_name)))
        self.shape_limits = None
        if None in self.input_shape:
            low, _, high = self._engine.get_tensor_profile_shape(self.input_name, 0)
            self.shape_limits = (tuple(low), tuple(high))
        # A stream of its own: on the legacy default stream TensorRT warns and synchronises with all other work.
        self._stream = self._check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._stream_handle = native_handle(self._stream)
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor name -> (device pointer, capacity in bytes)

    def _check(self, result: tuple, what: str) -> Any:
        return check_cuda(self._cudart, result, what)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        """A device allocation of at least nbytes for a tensor, reallocated only when it must grow."""
        pointer, capacity = self._buffers.get(name, (0, 0))
        if capacity >= nbytes:
            return pointer
        if pointer:
            self._check(self._cudart.cudaFree(pointer), "cudaFree")
        pointer = int(self._check(self._cudart.cudaMalloc(nbytes), "cudaMalloc"))
        self._buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Copy the batch in, execute_async_v3 on the engine's stream, copy the logits out, synchronise."""
        trt, cudart = self._trt, self._cudart
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if not self._context.set_input_shape(self.input_name, batch.shape):
            raise RDDError(f"TensorRT engine refuses input shape {batch.shape} "
                           f"(optimization profile min/max: {self.shape_limits})")
        source = self._device_buffer(self.input_name, batch.nbytes)
        self._context.set_tensor_address(self.input_name, source)
        logits = np.empty(0)
        for name in self._outputs:  # every output needs an address, even the optional "mask" we do not read
            shape = tuple(self._context.get_tensor_shape(name))
            host = np.empty(shape, dtype=trt.nptype(self._engine.get_tensor_dtype(name)))
            self._context.set_tensor_address(name, self._device_buffer(name, max(host.nbytes, 1)))
            if name == self.output_name:
                logits = host
        kinds = cudart.cudaMemcpyKind
        self._check(cudart.cudaMemcpyAsync(source, batch.ctypes.data, batch.nbytes,
                                           kinds.cudaMemcpyHostToDevice, self._stream), "cudaMemcpyAsync")
        if not self._context.execute_async_v3(self._stream_handle):
            raise RDDError(f"TensorRT execution failed for input shape {batch.shape}")
        self._check(cudart.cudaMemcpyAsync(logits.ctypes.data, self._buffers[self.output_name][0], logits.nbytes,
                                           kinds.cudaMemcpyDeviceToHost, self._stream), "cudaMemcpyAsync")
        self._check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return logits

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the engine is garbage-collected)."""
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        if hasattr(self, "_buffers"):
            self.close()
