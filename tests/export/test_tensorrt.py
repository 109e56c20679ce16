"""TensorRT builds: the version-dependent plan and the builder calls (against a recording stand-in for the
tensorrt module, so they run everywhere), and real engine builds where TensorRT and a GPU exist."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rdd_deploy.errors import RDDError
from rdd_deploy.export import BuildPlan, ExportOptions, export, export_engine, export_metadata, plan_build, profile_dims
from rdd_deploy.export.quantize import ImageCalibrationReader
from rdd_deploy.export.tensorrt import input_shape, trt_major
from rdd_deploy.runtime.model_info import ModelInfo


@pytest.mark.parametrize(("major", "precision", "method", "plan"), [
    (10, "fp32", "minmax", BuildPlan(10, "fp32")),
    (10, "fp16", "minmax", BuildPlan(10, "fp32", ("FP16",))),
    (10, "int8", "minmax", BuildPlan(10, "fp32", ("INT8", "FP16"), "IInt8MinMaxCalibrator")),
    (10, "int8", "entropy", BuildPlan(10, "fp32", ("INT8", "FP16"), "IInt8EntropyCalibrator2")),
    (11, "fp32", "minmax", BuildPlan(11, "fp32")),
    (11, "fp16", "minmax", BuildPlan(11, "fp16")),  # strongly typed: the FP16 ONNX carries the precision
    (11, "int8", "percentile", BuildPlan(11, "int8")),  # Q/DQ scales come from ORT's calibration
])
def test_precision_plan_per_tensorrt_generation(major: int, precision: str, method: str, plan: BuildPlan) -> None:
    assert plan_build(major, precision, method) == plan


def test_tensorrt_10_has_no_percentile_calibrator_and_old_versions_are_refused() -> None:
    with pytest.raises(RDDError, match="choose --calib-method minmax or entropy"):
        plan_build(10, "int8", "percentile")
    assert trt_major(types.SimpleNamespace(__version__="10.3.0.26")) == 10
    assert trt_major(types.SimpleNamespace(__version__="11.1.0")) == 11
    with pytest.raises(RDDError, match="TensorRT 8.6.1 is too old"):
        trt_major(types.SimpleNamespace(__version__="8.6.1"))


def test_optimisation_profile_from_the_export_shape() -> None:
    assert profile_dims((512, 1024), 4) == {"min": (1, 256, 512), "opt": (4, 512, 1024), "max": (4, 512, 1024)}
    assert profile_dims((64, 72), 1) == {"min": (1, 32, 32), "opt": (1, 64, 72), "max": (1, 64, 72)}
    assert input_shape((2, 64, 72), "NCHW_float") == (2, 3, 64, 72)
    assert input_shape((2, 64, 72), "NHWC_uint8") == (2, 64, 72, 3)


def fake_tensorrt(version: str, calls: list) -> types.ModuleType:
    """The parts of the tensorrt module that export_engine uses, recording every call; TensorRT 11 lacks the
    precision flags and calibrators it removed, so touching them fails as it would there."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Recorder:
        def __getattr__(self, name: str) -> Callable:
            return lambda *args: calls.append((name, *args)) or True

    class Tensor(types.SimpleNamespace):
        pass

    class Network(Recorder):
        num_outputs = 1
        get_input = staticmethod(lambda index: Tensor(name="images"))
        get_output = staticmethod(lambda index: Tensor(name="logits"))

    class Parser(Recorder):
        num_errors = 0

        def __init__(self, network: Network, logger: object) -> None:
            pass

    class Cache:
        serialize = staticmethod(lambda: b"timing")

    class Config(Recorder):
        create_timing_cache = staticmethod(lambda blob: calls.append(("create_timing_cache", blob)) or Cache())
        get_timing_cache = staticmethod(lambda: Cache())

    class Builder(Recorder):
        def __init__(self, logger: object) -> None:
            pass

        create_network = staticmethod(lambda *flags: calls.append(("create_network", *flags)) or Network())
        create_builder_config = staticmethod(lambda: Config())
        create_optimization_profile = staticmethod(lambda: Recorder())
        build_serialized_network = staticmethod(lambda network, config: b"\x00PLAN-AS-BUILT")

    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.Builder, trt.OnnxParser = Builder, Parser
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace()
    if version.startswith("10."):
        trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
        trt.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (), {"__init__": lambda self: None})
    return trt


def metadata(dynamic: bool) -> dict:
    """Export metadata of a 64x96 three-class model."""
    meta = {"class_names": ["a", "b", "c"], "miou": 0.71}
    return export_metadata(meta, "deeplabv3_r18", 3, (64, 96), dynamic, False, "fp32")


@pytest.mark.parametrize(("version", "precision", "parsed", "flags"), [
    ("10.3.0", "fp16", "m.onnx", [("set_flag", "FP16")]),
    ("11.0.0", "fp16", "m_fp16.onnx", []),
    ("10.3.0", "int8", "m.onnx", [("set_flag", "INT8"), ("set_flag", "FP16")]),
    ("11.0.0", "int8", "m_int8.onnx", []),
])
def test_engine_build_calls_and_sidecar(version: str, precision: str, parsed: str, flags: list, tmp_path: Path,
                                        photos: list[np.ndarray]) -> None:
    calls: list = []
    trt = fake_tensorrt(version, calls)
    onnx_files = {"fp32": tmp_path / "m.onnx", "fp16": tmp_path / "m_fp16.onnx", "int8": tmp_path / "m_int8.onnx"}
    reader = ImageCalibrationReader(photos, (64, 96), 2, "NCHW_float", (0.5,) * 3, (0.25,) * 3)
    engine = export_engine(onnx_files, tmp_path / "m.engine", metadata(dynamic=True), precision, batch=2,
                           workspace_gib=2, timing_cache=tmp_path / "t.cache", calibration=reader, trt=trt)
    assert engine.read_bytes() == b"\x00PLAN-AS-BUILT"  # the plan as TensorRT wrote it: no header in front
    assert ("create_network",) in calls  # no creation flags on either generation
    assert ("parse_from_file", str(tmp_path / parsed)) in calls
    assert ("set_memory_pool_limit", "WORKSPACE", 2 << 30) in calls
    assert [c for c in calls if c[0] == "set_flag"] == flags
    assert ("set_shape", "images", (1, 3, 32, 48), (2, 3, 64, 96), (2, 3, 64, 96)) in calls
    assert ("create_timing_cache", b"") in calls and (tmp_path / "t.cache").read_bytes() == b"timing"

    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    info = ModelInfo.parse(sidecar, "m.engine.json")  # what the runtime reads
    assert (info.precision, info.input_size, info.dynamic, info.torch_miou) == (precision, (64, 96), True, 0.71)
    assert info.engine["tensorrt_version"] == version
    assert sidecar["profiles"] == [{"input": "images", "min": [1, 3, 32, 48], "opt": [2, 3, 64, 96],
                                    "max": [2, 3, 64, 96]}]
    assert sidecar["input_name"] == "images" and sidecar["output_names"] == ["logits"]
    assert sidecar["build"]["source_onnx"] == parsed and sidecar["build"]["workspace_bytes"] == 2 << 30
    if version.startswith("10.") and precision == "int8":
        assert sidecar["build"]["calibrator"] == "IInt8MinMaxCalibrator"
        assert sidecar["build"]["calibration_images"] == 4


def test_static_engine_has_no_profile_and_a_bad_build_writes_nothing(tmp_path: Path) -> None:
    calls: list = []
    trt = fake_tensorrt("10.3.0", calls)
    export_engine({"fp32": tmp_path / "m.onnx"}, tmp_path / "m.engine", metadata(dynamic=False), trt=trt)
    assert not any(c[0] in ("set_shape", "add_optimization_profile") for c in calls)
    assert json.loads((tmp_path / "m.engine.json").read_text())["profiles"] == []

    trt.Builder.build_serialized_network = staticmethod(lambda network, config: None)
    with pytest.raises(RDDError, match="TensorRT could not build an engine from m.onnx"):
        export_engine({"fp32": tmp_path / "m.onnx"}, tmp_path / "other.engine", metadata(dynamic=False), trt=trt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]


@pytest.fixture
def tensorrt_gpu() -> types.ModuleType:
    """The real tensorrt module on a machine with a CUDA GPU, else a skip that says what is missing."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'rdd-deploy[trt]')")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    return trt


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_builds_verifies_and_loads_in_the_runtime(precision: str, tensorrt_gpu: types.ModuleType,
                                                              make_checkpoint: Callable[..., Path],
                                                              tmp_path: Path, photos: list[np.ndarray]) -> None:
    from rdd_deploy.runtime import Segmenter

    files = export(make_checkpoint("deeplabv3_mbv2"), ExportOptions(trt=True, precision=precision, dynamic=True,
                                                                    input_size=(64, 96), batch=2, out=tmp_path))
    engine, sidecar = files[-2:]
    assert sidecar == engine.with_name(engine.name + ".json") and (tmp_path / "tensorrt.timing.cache").is_file()
    segmenter, reference = Segmenter.from_file(engine), Segmenter.from_file(files[0])
    assert segmenter.info.precision == precision and segmenter.info.engine["tensorrt_version"]
    agree = np.mean([np.mean(segmenter.predict(p) == reference.predict(p)) for p in photos])
    assert agree >= (0.999 if precision == "fp32" else 0.99)


@pytest.mark.trt
def test_real_int8_engine_from_calibration(tensorrt_gpu: types.ModuleType, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    trained = request.getfixturevalue("trained")  # after the skip: training costs seconds
    files = export(trained["checkpoint"], ExportOptions(trt=True, precision="int8", input_size=(64, 64),
                                                        calib_data="synthetic:size=64,train=16,val=4",
                                                        calib_images=16, out=tmp_path))
    build = json.loads(files[-1].read_text())["build"]
    major = int(tensorrt_gpu.__version__.split(".")[0])
    assert build["source_onnx"] == (files[0].name if major == 10 else files[1].name)
