"""Strict test doubles of the tensorrt module (10.3, 10.16, 11.1, 11.4); cuda-python's are in cuda_doubles.py.

Every class has only the methods, properties, argument names and enum values of the real Python bindings, as
tests/trt_api/test_contract.py checks against dumps of the real wheels (tests/trt_api/make_dumps.py makes them):
`__slots__` make any other attribute an AttributeError, wrong argument types a TypeError, and they return what
the real calls return, None and -1 included. A `World` holds what a test
inspects or switches on: the calls, the loggers, device memory, and the failures to simulate. The "GPU" is host
memory reached through ctypes, and an engine runs the ONNX file it was built from with ONNX Runtime, so the whole
build -> deserialize -> execute_async_v3 -> copy-back path runs here.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

PLAN_MAGIC, CACHE_MAGIC = b"\x00rdd-plan\x00", b"TRT-TIMING-CACHE"
VERSIONS = ("10.3.0", "10.16.0.72", "11.1.0.106")  # JetPack 6, the last TensorRT 10, current TensorRT 11


@dataclass
class World:
    """The state behind one fake GPU: what happened, and which failure each call should simulate."""

    version: str
    device: str = "NVIDIA Orin (fake)"
    capability: tuple[int, int] = (8, 7)
    driver: bool = True  # False: no libcuda.so.1, which cuda-python reports as `cuda_python`'s release does
    cuda_python: str = "12.9.4"
    fail: set[str] = field(default_factory=set)  # parse, profile, build, deserialize, wrong_logits, memcpy
    calls: list[tuple] = field(default_factory=list)
    loggers: int = 0
    memory: dict[int, Any] = field(default_factory=dict)  # device pointer -> ctypes buffer
    streams: list[int] = field(default_factory=list)
    int_handles: int = 0  # int(cudaStream_t) calls, deprecated since cuda-bindings 12.9.1
    executions: list[int] = field(default_factory=list)  # the stream handle of each execute_async_v3
    calibration_batches: list[np.ndarray] = field(default_factory=list)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])


def tensorrt_module(world: World) -> ModuleType:
    """A tensorrt module with the names of `world.version`'s Python API and nothing else."""
    major, minor = world.major, world.minor
    trt = ModuleType("tensorrt")
    trt.__version__ = world.version
    # Values as the real enums number them (tests/trt_api holds their dumps; test_contract.py compares).
    if major >= 11:
        creation = {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
        flags = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "TF32": 6, "SPARSE_WEIGHTS": 7, "DIRECT_IO": 11,
                 "VERSION_COMPATIBLE": 12, "STRIP_PLAN": 18}
    else:  # TensorRT 10 also has the weak-typing flags (FP16 ... PREFER_PRECISION_CONSTRAINTS) that 11 removed
        creation = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
        if minor >= 16:
            creation |= {"PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3}
        flags = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "TF32": 6, "SPARSE_WEIGHTS": 7,
                 "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10, "DIRECT_IO": 11,
                 "VERSION_COMPATIBLE": 13, "FP8": 15, "BF16": 17, "STRIP_PLAN": 19, "INT4": 22}
        if minor >= 16:
            flags["FP4"] = 26
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM",
                                                          "DLA_GLOBAL_DRAM", "TACTIC_DRAM"], start=0)
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    trt.DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16",
                                             "INT64"], start=0)
    numpy_types = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16, trt.DataType.INT8: np.int8,
                   trt.DataType.INT32: np.int32, trt.DataType.BOOL: np.bool_, trt.DataType.UINT8: np.uint8,
                   trt.DataType.INT64: np.int64}
    onnx_types = {1: trt.DataType.FLOAT, 10: trt.DataType.HALF, 2: trt.DataType.UINT8, 6: trt.DataType.INT32,
                  7: trt.DataType.INT64}

    def nptype(trt_type: Any) -> type:
        if trt_type not in numpy_types:  # BF16, FP8 ...: no numpy type
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return numpy_types[trt_type]

    def expect(value: Any, kind: type | tuple, what: str) -> None:
        if not isinstance(value, kind):  # pybind11 refuses incompatible arguments with a TypeError
            raise TypeError(f"{what}(): incompatible function arguments: {type(value).__name__}")

    class Logger:
        __slots__ = ("min_severity",)
        Severity = enum.IntEnum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"], start=0)
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

        def __init__(self, min_severity: Any = Severity.WARNING) -> None:
            world.loggers += 1
            self.min_severity = min_severity

        def log(self, severity: Any, msg: str) -> None:
            print(f"[TRT] {msg}", file=sys.stderr)

    class ITensor:
        __slots__ = ("name", "shape", "dtype")

        def __init__(self, name: str, shape: tuple, dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class INetworkDefinition:
        __slots__ = ("_flags", "_inputs", "_outputs", "_source")

        def __init__(self, flags: int) -> None:
            self._flags, self._inputs, self._outputs, self._source = flags, [], [], None

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_input(self, index: int) -> ITensor:
            return self._inputs[index]

        def get_output(self, index: int) -> ITensor:
            return self._outputs[index]

        def get_flag(self, flag: Any) -> bool:
            expect(flag, trt.NetworkDefinitionCreationFlag, "get_flag")
            return bool(self._flags & (1 << int(flag)))

    class ParserError:
        __slots__ = ("_desc",)

        def __init__(self, desc: str) -> None:
            self._desc = desc

        def desc(self) -> str:
            return self._desc

        def __str__(self) -> str:
            return f"In node -1 with name:  and operator:  (parseFromFile): {self._desc}"

    class OnnxParser:
        __slots__ = ("_network", "_errors")

        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            expect(logger, Logger, "OnnxParser")
            self._network, self._errors = network, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

        def clear_errors(self) -> None:
            self._errors.clear()

        def parse_from_file(self, model: str) -> bool:
            import onnx

            world.calls.append(("parse_from_file", model))
            if "parse" in world.fail:
                self._errors.append(ParserError("Assertion failed: unsupported operator"))
                return False
            try:
                graph = onnx.load(model).graph
            except OSError:
                self._errors.append(ParserError(f"Failed to open file: {model}"))
                return False

            def tensor(value: Any) -> ITensor:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
                return ITensor(value.name, dims, onnx_types[value.type.tensor_type.elem_type])

            self._network._inputs = [tensor(value) for value in graph.input]
            self._network._outputs = [tensor(value) for value in graph.output]
            self._network._source = model
            return True

    def host_memory(data: bytes) -> Any:
        """IHostMemory: a buffer (memoryview works) with nbytes and dtype, like the real one."""
        base = ctypes.c_char * len(data)
        kind = type("IHostMemory", (base,), {"nbytes": property(lambda self: len(data)),
                                             "dtype": property(lambda self: trt.DataType.UINT8)})
        return kind.from_buffer_copy(data)

    class ITimingCache:
        __slots__ = ("_device", "_entries")

        def __init__(self, device: str, entries: int) -> None:
            self._device, self._entries = device, entries

        def serialize(self) -> Any:
            return host_memory(CACHE_MAGIC + json.dumps([self._device, self._entries]).encode())

        def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
            return ignore_mismatch or input_cache._device == self._device

        def reset(self) -> bool:
            self._entries = 0
            return True

    class IOptimizationProfile:
        __slots__ = ("_shapes",)

        def __init__(self) -> None:
            self._shapes: dict[str, list[tuple]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
            expect(input, str, "set_shape")
            shapes = [tuple(int(v) for v in shape) for shape in (min, opt, max)]
            if len({len(s) for s in shapes}) != 1 or any(a > b for low, high in zip(shapes, shapes[1:])
                                                         for a, b in zip(low, high)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            world.calls.append(("set_shape", input, *shapes))
            self._shapes[input] = shapes

        def get_shape(self, input: str) -> list[tuple]:
            return self._shapes.get(input, [])

    class IBuilderConfig:
        __slots__ = ("_pools", "_flags", "_profiles", "_cache", "_calibrator", "_calibration_profile")

        def __init__(self) -> None:
            self._pools, self._flags, self._profiles, self._cache = {}, set(), [], None
            self._calibrator, self._calibration_profile = None, None

        if major < 11:  # implicit-quantization calibration, deprecated in TensorRT 10.1 and removed in 11
            @property
            def int8_calibrator(self) -> Any:
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator: Any) -> None:
                if calibrator is not None:  # None (no calibrator) is accepted, like the real property
                    expect(calibrator, IInt8Calibrator, "int8_calibrator")
                self._calibrator = calibrator

            def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
                self._calibration_profile = profile
                return True

            def get_calibration_profile(self) -> IOptimizationProfile | None:
                return self._calibration_profile

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            expect(pool, trt.MemoryPoolType, "set_memory_pool_limit")
            expect(pool_size, int, "set_memory_pool_limit")
            world.calls.append(("set_memory_pool_limit", pool.name, pool_size))
            self._pools[pool] = pool_size

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(pool, 0)

        def set_flag(self, flag: Any) -> None:
            expect(flag, trt.BuilderFlag, "set_flag")
            world.calls.append(("set_flag", flag.name))
            self._flags.add(flag)

        def clear_flag(self, flag: Any) -> None:
            self._flags.discard(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self._flags

        num_optimization_profiles = property(lambda self: len(self._profiles))

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            expect(profile, IOptimizationProfile, "add_optimization_profile")
            if "profile" in world.fail or not profile._shapes:  # nvinfer1 returns -1 for an invalid profile
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
            blob = bytes(memoryview(serialized_timing_cache))
            world.calls.append(("create_timing_cache", blob))
            if not blob:
                return ITimingCache(world.device, 0)
            if not blob.startswith(CACHE_MAGIC):
                return None  # createTimingCache returns nullptr for a corrupt or foreign blob
            try:
                device, entries = json.loads(blob[len(CACHE_MAGIC):])
            except ValueError:
                return None
            return ITimingCache(device, entries)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            expect(cache, ITimingCache, "set_timing_cache")  # a reference parameter: None is a TypeError
            world.calls.append(("set_timing_cache", cache._device, ignore_mismatch))
            if cache._device != world.device and not ignore_mismatch:
                return False
            self._cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

    class Builder:
        __slots__ = ("_logger",)

        def __init__(self, logger: Logger) -> None:
            expect(logger, Logger, "Builder")
            self._logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            expect(flags, int, "create_network")
            world.calls.append(("create_network", flags))
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Any:
            expect(network, INetworkDefinition, "build_serialized_network")
            dynamic = any(-1 in tensor.shape for tensor in network._inputs)
            if "build" in world.fail or network._source is None or (dynamic and not config._profiles):
                return None  # the real builder logs why and returns None
            calibrator = getattr(config, "int8_calibrator", None)
            if calibrator is not None:
                calibrate(calibrator, network, config)
            if config._cache is not None:
                config._cache._entries += 1
            shapes = config._profiles[0]._shapes if config._profiles else {}
            plan = {"source": network._source, "inputs": [[t.name, t.shape, int(t.dtype)] for t in network._inputs],
                    "outputs": [[t.name, t.shape, int(t.dtype)] for t in network._outputs], "profile": shapes}
            return host_memory(PLAN_MAGIC + json.dumps(plan).encode())

    def calibrate(calibrator: Any, network: INetworkDefinition, config: IBuilderConfig) -> None:
        """What IBuilder does with an IInt8Calibrator: ask for batches (at the calibration profile's opt shape)
        until None; swallow exceptions like the pybind11 trampoline in pyInt8.cpp (it prints, then says "no more
        batches")."""
        tensor = network._inputs[0]
        profile = config.get_calibration_profile()
        shape = profile.get_shape(tensor.name)[1] if profile else (calibrator.get_batch_size(), *tensor.shape[1:])
        while True:
            try:
                pointers = calibrator.get_batch([tensor.name])
            except Exception:  # noqa: BLE001 -- the real trampoline's catch (...)
                print("[ERROR] Exception caught in get_batch()", file=sys.stderr)
                pointers = None
            if not pointers:
                return
            world.calibration_batches.append(read(pointers[0], np.dtype(nptype(tensor.dtype)), shape).copy())

    class IInt8Calibrator:
        def __init__(self) -> None:
            pass

    class IExecutionContext:
        __slots__ = ("_engine", "_shapes", "_addresses")

        def __init__(self, engine: ICudaEngine) -> None:
            self._engine, self._shapes, self._addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(v) for v in shape)
            low, _, high = self._engine.get_tensor_profile_shape(name, 0) if self._engine._profile else (shape,) * 3
            if len(shape) != len(low) or any(not a <= s <= b for a, s, b in zip(low, shape, high)):
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                return self._shapes[name]
            return self._engine._outputs_for(self._input())[self._engine._output_index(name)].shape

        def set_tensor_address(self, name: str, memory: int) -> bool:
            expect(memory, int, "set_tensor_address")
            self._addresses[name] = memory
            return True

        def _input(self) -> np.ndarray:
            name, _, dtype = self._engine._plan["inputs"][0]
            return read(self._addresses.get(name, 0), np.dtype(nptype(trt.DataType(dtype))), self._shapes[name])

        def execute_async_v3(self, stream_handle: int) -> bool:
            if not hasattr(stream_handle, "__int__"):  # the real one converts any object with __int__
                raise TypeError(f"execute_async_v3(): incompatible function arguments: {type(stream_handle).__name__}")
            stream_handle = int(stream_handle)
            world.executions.append(stream_handle)
            outputs = self._engine._outputs_for(self._input())
            for (name, _, _), value in zip(self._engine._plan["outputs"], outputs):
                if "wrong_logits" in world.fail and name == "logits":
                    value = value.copy()
                    value[:, 0] += 100.0  # an engine whose class-0 logit is broken
                ctypes.memmove(self._addresses[name], np.ascontiguousarray(value).ctypes.data, value.nbytes)
            return True

    class ICudaEngine:
        __slots__ = ("_plan", "_profile", "_session")

        def __init__(self, plan: dict) -> None:
            import onnxruntime as ort

            self._plan, self._profile = plan, plan["profile"]
            self._session = ort.InferenceSession(plan["source"], providers=["CPUExecutionProvider"])

        def _names(self) -> list[str]:
            return [entry[0] for entry in self._plan["inputs"] + self._plan["outputs"]]

        def _output_index(self, name: str) -> int:
            return [entry[0] for entry in self._plan["outputs"]].index(name)

        def _outputs_for(self, feed: np.ndarray) -> list[np.ndarray]:
            return self._session.run(None, {self._plan["inputs"][0][0]: feed})

        num_io_tensors = property(lambda self: len(self._names()))
        num_optimization_profiles = property(lambda self: 1 if self._profile else 0)

        def get_tensor_name(self, index: int) -> str:
            return self._names()[index]

        def get_tensor_mode(self, name: str) -> Any:
            if name not in self._names():
                return trt.TensorIOMode.NONE
            inputs = [entry[0] for entry in self._plan["inputs"]]
            return trt.TensorIOMode.INPUT if name in inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple:
            entry = next(e for e in self._plan["inputs"] + self._plan["outputs"] if e[0] == name)
            return tuple(entry[1])

        def get_tensor_dtype(self, name: str) -> Any:
            entry = next(e for e in self._plan["inputs"] + self._plan["outputs"] if e[0] == name)
            return trt.DataType(entry[2])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple]:
            return [tuple(shape) for shape in self._profile[name]]

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

    class Runtime:
        __slots__ = ("_logger",)

        def __init__(self, logger: Logger) -> None:
            expect(logger, Logger, "Runtime")
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            blob = bytes(memoryview(serialized_engine))
            if "deserialize" in world.fail or not blob.startswith(PLAN_MAGIC):
                return None
            return ICudaEngine(json.loads(blob[len(PLAN_MAGIC):]))

    def read(pointer: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
        """The array at a fake device pointer (which must lie inside one of world.memory's allocations)."""
        nbytes = int(np.prod(shape)) * dtype.itemsize
        owner = [p for p, buf in world.memory.items() if p <= pointer and pointer + nbytes <= p + ctypes.sizeof(buf)]
        assert owner, f"pointer {pointer:#x} ({nbytes} bytes) is not device memory"
        return np.frombuffer((ctypes.c_char * nbytes).from_address(pointer), dtype).reshape(shape)

    trt.Logger, trt.Builder, trt.Runtime, trt.OnnxParser, trt.nptype = Logger, Builder, Runtime, OnnxParser, nptype
    trt.INetworkDefinition, trt.IBuilderConfig, trt.IOptimizationProfile = INetworkDefinition, IBuilderConfig, \
        IOptimizationProfile
    trt.ITimingCache, trt.ICudaEngine, trt.IExecutionContext = ITimingCache, ICudaEngine, IExecutionContext
    if major < 11:  # the implicit-quantization calibrators TensorRT 11 removed
        trt.IInt8Calibrator = IInt8Calibrator
        trt.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (IInt8Calibrator,), {})
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (IInt8Calibrator,), {})
    return trt


def install(monkeypatch: Any, world: World, native_handles: bool = True) -> ModuleType:
    """Put the doubles where `import tensorrt` and `from cuda.bindings import runtime` find them."""
    from cuda_doubles import cuda_modules

    trt = tensorrt_module(world)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name, module in cuda_modules(world, native_handles).items():
        monkeypatch.setitem(sys.modules, name, module)
    return trt
