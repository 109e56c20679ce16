"""Strict test doubles of cuda-python's runtime bindings, for the TensorRT doubles in trt_doubles.py.

Only functions, enums and types that `cuda.bindings.runtime` has (tests/export/test_tensorrt.py checks the names
against the real module where cuda-python is installed), with its (error, value...) tuple returns, and both ways
it fails without an NVIDIA driver (`World.driver`, `World.cuda_python`). Device memory is host memory reached
through ctypes, recorded in the `World` of trt_doubles.py.
"""

from __future__ import annotations

import ctypes
import enum
from types import ModuleType
from typing import Any


def cuda_modules(world: Any, native_handles: bool = True) -> dict[str, ModuleType]:
    """cuda, cuda.bindings, cuda.bindings.runtime (and, from cuda-bindings 12.9.1, cuda.bindings.utils)."""
    cudart = ModuleType("cuda.bindings.runtime")
    cudart.cudaError_t = enum.IntEnum("cudaError_t", {"cudaSuccess": 0, "cudaErrorInvalidValue": 1,
                                                      "cudaErrorMemoryAllocation": 2,
                                                      "cudaErrorInsufficientDriver": 35, "cudaErrorNoDevice": 100})
    cudart.cudaMemcpyKind = enum.IntEnum("cudaMemcpyKind", ["cudaMemcpyHostToHost", "cudaMemcpyHostToDevice",
                                                            "cudaMemcpyDeviceToHost"], start=0)
    ok, invalid = cudart.cudaError_t.cudaSuccess, cudart.cudaError_t.cudaErrorInvalidValue

    class cudaStream_t:  # noqa: N801 -- cuda-python's name
        __slots__ = ("_handle",)

        def __init__(self, init_value: int = 0) -> None:
            self._handle = init_value

        def __int__(self) -> int:
            world.int_handles += 1
            return self._handle

    class cudaDeviceProp:  # noqa: N801
        __slots__ = ("name", "major", "minor")

    def cudaGetDeviceCount() -> tuple:  # noqa: N802
        return ok, 1

    def cudaGetDeviceProperties(device: int) -> tuple:  # noqa: N802
        if device != 0:
            return cudart.cudaError_t.cudaErrorInvalidValue, None
        props = cudaDeviceProp()
        props.name, (props.major, props.minor) = world.device.encode().ljust(256, b"\0"), world.capability
        return ok, props

    def cudaMalloc(size: int) -> tuple:  # noqa: N802
        buffer = ctypes.create_string_buffer(max(int(size), 1))
        world.memory[ctypes.addressof(buffer)] = buffer
        return ok, ctypes.addressof(buffer)

    def cudaFree(devPtr: int) -> tuple:  # noqa: N802, N803
        return (ok,) if world.memory.pop(int(devPtr), None) is not None else (invalid,)

    def cudaMemcpy(dst: int, src: int, count: int, kind: Any) -> tuple:  # noqa: N802
        if not isinstance(kind, cudart.cudaMemcpyKind):
            raise TypeError("kind must be a cudaMemcpyKind")
        world.calls.append(("cudaMemcpy", kind.name))
        if "memcpy" in world.fail and len([c for c in world.calls if c[0] == "cudaMemcpy"]) > 1:
            return (invalid,)  # the second copy fails, as a lost device or a bad pointer would
        ctypes.memmove(int(dst), int(src), int(count))
        return (ok,)

    def cudaMemcpyAsync(dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple:  # noqa: N802
        if not isinstance(stream, (cudaStream_t, int)):  # cuda-bindings 12.9 and 13 also take 0 (legacy default)
            raise TypeError("stream must be a cudaStream_t")
        return cudaMemcpy(dst, src, count, kind)

    def cudaStreamCreate() -> tuple:  # noqa: N802
        handle = 0x5000 + len(world.streams) * 0x10  # never 0: 0 is the legacy default stream
        world.streams.append(handle)
        return ok, cudaStream_t(handle)

    def cudaStreamSynchronize(stream: Any) -> tuple:  # noqa: N802
        return (ok,)

    def cudaStreamDestroy(stream: Any) -> tuple:  # noqa: N802
        return (ok,)

    def without_driver(function: Any, returns_value: bool) -> Any:
        """The call on a host without libcuda.so.1: cuda-python 12.6-12.8 raise, 12.9+ return an error code."""
        def call(*args: Any) -> tuple:
            if tuple(int(v) for v in world.cuda_python.split(".")[:2]) < (12, 9):
                raise RuntimeError("Failed to dlopen libcuda.so.1")
            return (cudart.cudaError_t.cudaErrorInsufficientDriver,) + ((None,) if returns_value else ())
        call.__name__ = function.__name__
        return call

    for function in (cudaGetDeviceCount, cudaGetDeviceProperties, cudaMalloc, cudaFree, cudaMemcpy, cudaMemcpyAsync,
                     cudaStreamCreate, cudaStreamSynchronize, cudaStreamDestroy):
        returns_value = function in (cudaGetDeviceCount, cudaGetDeviceProperties, cudaMalloc, cudaStreamCreate)
        setattr(cudart, function.__name__, function if world.driver else without_driver(function, returns_value))
    cudart.cudaStream_t = cudaStream_t
    bindings, cuda = ModuleType("cuda.bindings"), ModuleType("cuda")
    bindings.__version__ = world.cuda_python
    bindings.runtime, cuda.bindings = cudart, bindings
    modules = {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart}
    if native_handles:
        utils = ModuleType("cuda.bindings.utils")
        utils.get_cuda_native_handle = lambda obj: obj._handle
        bindings.utils = utils
        modules["cuda.bindings.utils"] = utils
    else:
        modules["cuda.bindings.utils"] = None  # cuda-python before 12.9.1: importing it fails
    return modules
