"""TensorRT builds against strict doubles of TensorRT 10.3 / 10.16 / 11.1 and cuda-python (tests/trt_doubles.py):
the plan per version, every failure return of the real API, verification against ONNX Runtime; and real engine
builds where TensorRT and a GPU exist."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import trt_doubles
from cuda_doubles import cuda_modules
from trt_doubles import VERSIONS, World

from rdd_deploy.errors import RDDError
from rdd_deploy.export import (BuildPlan, ExportOptions, export, export_metadata, export_onnx_fp16, export_onnx_int8,
                               plan_build, profile_dims)
from rdd_deploy.export.engine import EngineOptions, build_engine, parse_profile
from rdd_deploy.export.graph import read_metadata, set_metadata
from rdd_deploy.export.quantize import TENSORRT_SCHEME
from rdd_deploy.export.tensorrt import input_shape, source_precision, trt_major
from rdd_deploy.runtime.model_info import ModelInfo
from rdd_deploy.runtime.preprocess import normalize_batch, resize_image

from .helpers import MEAN, STD

STRONG = 1 << 1  # 1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED


@pytest.mark.parametrize(("major", "precision", "source", "plan"), [
    (10, "fp32", "fp32", BuildPlan(10, "fp32", "fp32", False)),
    (10, "fp16", "fp32", BuildPlan(10, "fp16", "fp32", False, ("FP16",))),
    (10, "fp16", "fp16", BuildPlan(10, "fp16", "fp16", True)),  # the FP16 ONNX carries the precision
    (10, "int8", "int8", BuildPlan(10, "int8", "int8", True)),  # explicit quantization from the Q/DQ ONNX
    (11, "fp32", "fp32", BuildPlan(11, "fp32", "fp32", True)),
    (11, "fp16", "fp16", BuildPlan(11, "fp16", "fp16", True)),
    (11, "int8", "int8", BuildPlan(11, "int8", "int8", True)),
])
def test_precision_plan_per_tensorrt_generation(major: int, precision: str, source: str, plan: BuildPlan) -> None:
    assert plan_build(major, precision, source) == plan
    assert source_precision(major, precision) == ("fp32" if (major, precision) == (10, "fp16") else precision)


def test_implicit_calibration_is_a_tensorrt_10_fallback_and_bad_pairs_are_refused() -> None:
    assert plan_build(10, "int8", "fp32", True, "entropy") == BuildPlan(10, "int8", "fp32", False, ("INT8", "FP16"),
                                                                         "IInt8EntropyCalibrator2")
    assert source_precision(10, "int8", implicit_int8=True) == "fp32"
    with pytest.raises(RDDError, match="TensorRT 11 removed implicit INT8 calibration"):
        plan_build(11, "int8", "fp32", True)
    with pytest.raises(RDDError, match="choose --calib-method minmax or entropy"):
        plan_build(10, "int8", "fp32", True, "percentile")
    with pytest.raises(RDDError, match=r"fp16 engine from a fp32 ONNX with TensorRT 11: .*from the FP16 ONNX"):
        plan_build(11, "fp16", "fp32")
    with pytest.raises(RDDError, match=r"from the Q/DQ INT8 ONNX .*, or from the FP32 ONNX with --trt-calibrate"):
        plan_build(10, "int8", "fp32")
    assert trt_major(types.SimpleNamespace(__version__="10.3.0.30")) == 10
    with pytest.raises(RDDError, match="TensorRT 8.6.1 is too old"):
        trt_major(types.SimpleNamespace(__version__="8.6.1"))


def test_optimisation_profile_from_the_export_shape_or_the_command_line() -> None:
    assert profile_dims((512, 1024), 4) == {"min": (1, 256, 512), "opt": (4, 512, 1024), "max": (4, 512, 1024)}
    assert profile_dims((64, 72), 1) == {"min": (1, 32, 32), "opt": (1, 64, 72), "max": (1, 64, 72)}
    assert input_shape((2, 64, 72), "NCHW_float") == (2, 3, 64, 72)
    assert input_shape((2, 64, 72), "NHWC_uint8") == (2, 64, 72, 3)
    assert parse_profile("1x32x32:2x64x96:4x64x96") == {"min": (1, 32, 32), "opt": (2, 64, 96), "max": (4, 64, 96)}
    with pytest.raises(RDDError, match="--dynamic must be MIN:OPT:MAX"):
        parse_profile("2x64x96")


@pytest.fixture(scope="module")
def exported(photos: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fp32, fp16 and Q/DQ int8 ONNX files of a two-convolution dynamic model, with the export's metadata and
    names (built with the exporter's own FP16 and INT8 steps; a full `export` costs minutes on a busy CPU)."""
    import torch

    out = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)).eval()
    fp32 = out / "deeplabv3_mbv2_64x96_dyn.onnx"
    axes = {"images": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}}
    torch.onnx.export(net, (torch.zeros(1, 3, 64, 96),), str(fp32), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["logits"], dynamic_axes=axes)
    metadata = export_metadata({"class_names": ["a", "b", "c"]}, "deeplabv3_mbv2", 3, (64, 96), True, False, "fp32")
    model = onnx.load(str(fp32))
    set_metadata(model, metadata)
    onnx.save(model, str(fp32))
    return {"fp32": fp32, "fp16": export_onnx_fp16(fp32, out / "deeplabv3_mbv2_64x96_dyn_fp16.onnx", metadata),
            "int8": export_onnx_int8(fp32, out / "deeplabv3_mbv2_64x96_dyn_int8.onnx", metadata, photos,
                                     scheme=TENSORRT_SCHEME)}  # what `export --trt` and `--int8-for tensorrt` write


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Callable[..., World]:
    """(version, fail=..., native_handles=...) -> the World behind freshly installed TensorRT/cuda-python doubles."""
    def make(version: str, fail: tuple[str, ...] = (), native_handles: bool = True) -> World:
        world = World(version, fail=set(fail))
        trt_doubles.install(monkeypatch, world, native_handles)
        return world

    return make


def written(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if not path.name.endswith(".cache"))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_from_the_onnx_that_carries_the_precision(version: str, precision: str, exported: dict[str, Path],
                                                         gpu: Callable[..., World], tmp_path: Path,
                                                         photos: list[np.ndarray]) -> None:
    world = gpu(version)
    files = build_engine(exported[precision], tmp_path, EngineOptions(batch=2), photos[:2])
    assert [path.name for path in files] == [f"deeplabv3_mbv2_64x96_dyn_{precision}.engine",
                                             f"deeplabv3_mbv2_64x96_dyn_{precision}.engine.json"]
    assert files[0].read_bytes().startswith(trt_doubles.PLAN_MAGIC)  # the plan as TensorRT wrote it: no header
    assert ("parse_from_file", str(exported[precision])) in world.calls
    # Strongly typed: TensorRT 10 is asked for it, TensorRT 11 always is (and ignores the flag).
    assert ("create_network", STRONG if world.major == 10 else 0) in world.calls
    assert not [call for call in world.calls if call[0] == "set_flag"]
    assert ("set_memory_pool_limit", "WORKSPACE", 4 << 30) in world.calls
    assert ("set_shape", "images", (1, 3, 32, 48), (2, 3, 64, 96), (2, 3, 64, 96)) in world.calls
    # Verified on its own stream, through cuda.bindings.utils, with the one logger the builder had.
    assert world.executions and set(world.executions) == set(world.streams) and 0 not in world.executions
    assert world.int_handles == 0 and world.loggers == 1 and not world.memory  # every device buffer freed

    sidecar = json.loads(files[1].read_text())
    info = ModelInfo.parse(sidecar, files[1].name)  # what the runtime reads
    assert (info.precision, info.input_size, info.dynamic) == (precision, (64, 96), True)
    assert info.engine == {"tensorrt_version": version, "device_name": world.device, "compute_capability": "8.7"}
    assert sidecar["profiles"] == [{"input": "images", "min": [1, 3, 32, 48], "opt": [2, 3, 64, 96],
                                    "max": [2, 3, 64, 96]}]
    assert sidecar["build"]["source_onnx"] == exported[precision].name and sidecar["build"]["strongly_typed"]
    assert json.loads((tmp_path / "tensorrt.timing.cache").read_bytes()[len(trt_doubles.CACHE_MAGIC):]) == \
        [world.device, 1]


@pytest.mark.slow
def test_export_trt_on_tensorrt_10_builds_fp16_from_the_fp32_onnx_with_the_flag(
        make_checkpoint: Callable[..., Path], gpu: Callable[..., World], tmp_path: Path) -> None:
    world = gpu("10.3.0")
    files = export(make_checkpoint("deeplabv3_mbv2"), ExportOptions(trt=True, precision="fp16", input_size=(64, 96),
                                                                    out=tmp_path))
    assert [path.name for path in files] == ["deeplabv3_mbv2_64x96.onnx", "deeplabv3_mbv2_64x96_fp16.onnx",
                                             "deeplabv3_mbv2_64x96_fp16.engine",
                                             "deeplabv3_mbv2_64x96_fp16.engine.json"]
    assert ("parse_from_file", str(files[0])) in world.calls and ("create_network", 0) in world.calls
    assert [call for call in world.calls if call[0] == "set_flag"] == [("set_flag", "FP16")]
    assert not [call for call in world.calls if call[0] == "set_shape"]  # static: no optimization profile
    assert json.loads(files[-1].read_text())["profiles"] == [] and world.executions


def test_export_trt_int8_writes_tensorrt_s_symmetric_qdq_and_builds_from_it(
        make_checkpoint: Callable[..., Path], gpu: Callable[..., World], tmp_path: Path) -> None:
    world = gpu(VERSIONS[-1])
    files = export(make_checkpoint("deeplabv3_mbv2"), ExportOptions(
        trt=True, precision="int8", input_size=(64, 96), out=tmp_path, verify=False,
        calib_data="synthetic:size=64,train=4,val=1", calib_images=4))
    int8 = tmp_path / "deeplabv3_mbv2_64x96_int8.onnx"
    assert int8 in files and ("parse_from_file", str(int8)) in world.calls
    assert read_metadata(int8)["int8"] == TENSORRT_SCHEME.to_metadata()


def test_implicit_calibration_on_tensorrt_10_feeds_every_batch(exported: dict[str, Path], gpu: Callable[..., World],
                                                               tmp_path: Path, photos: list[np.ndarray]) -> None:
    world = gpu("10.16.0.72")
    files = build_engine(exported["fp32"], tmp_path, EngineOptions("int8", batch=2, implicit_int8=True,
                                                                   calib_method="entropy", calib_images=photos),
                         photos[:1])
    assert ("parse_from_file", str(exported["fp32"])) in world.calls  # the FP32 ONNX, not the Q/DQ one
    assert [call for call in world.calls if call[0] == "set_flag"] == [("set_flag", "INT8"), ("set_flag", "FP16")]
    # Two batches of two at the profile's opt shape, normalised as the runtime does.
    assert [batch.shape for batch in world.calibration_batches] == [(2, 3, 64, 96)] * 2
    expected = normalize_batch(np.stack([resize_image(p, (64, 96)) for p in photos[2:]]), MEAN, STD)
    np.testing.assert_array_equal(world.calibration_batches[1], expected)
    build = json.loads(files[1].read_text())["build"]
    assert (build["calibrator"], build["calibration_images"]) == ("IInt8EntropyCalibrator2", 4)


def test_a_bgr_model_is_calibrated_and_verified_in_bgr(exported: dict[str, Path], gpu: Callable[..., World],
                                                       tmp_path: Path, photos: list[np.ndarray]) -> None:
    world = gpu("10.16.0.72")
    mean, std = (0.408, 0.458, 0.481), (1 / 255,) * 3  # the official code's Caffe convention, listed as B, G, R
    model = onnx.load(str(exported["fp32"]))
    set_metadata(model, {**read_metadata(exported["fp32"]), "channel_order": "BGR", "mean": mean, "std": std})
    bgr = tmp_path / "bgr" / exported["fp32"].name
    bgr.parent.mkdir()
    onnx.save(model, str(bgr))
    # Verification passes only if the engine's feed and ONNX Runtime's reference are normalised alike.
    build_engine(bgr, tmp_path, EngineOptions("int8", batch=2, implicit_int8=True, calib_images=photos), photos[:2])
    pixels = np.stack([resize_image(p, (64, 96)) for p in photos[2:]])
    np.testing.assert_array_equal(world.calibration_batches[1], normalize_batch(pixels, mean, std, "BGR"))
    assert not np.array_equal(world.calibration_batches[1], normalize_batch(pixels, mean, std, "RGB"))


def test_an_int8_onnx_tuned_for_the_cpu_is_refused_before_tensorrt_parses_it(
        exported: dict[str, Path], gpu: Callable[..., World], tmp_path: Path, photos: list[np.ndarray]) -> None:
    world = gpu(VERSIONS[-1])
    cpu = export_onnx_int8(exported["fp32"], tmp_path / "cpu" / exported["int8"].name,
                           read_metadata(exported["fp32"]), photos[:2])  # default: this CPU's asymmetric scheme
    with pytest.raises(RDDError, match=r"asymmetric uint8 activations.*--int8-for tensorrt"):
        build_engine(cpu, tmp_path / "out", EngineOptions(), None)
    assert not [call for call in world.calls if call[0] == "parse_from_file"] and not (tmp_path / "out").exists()


def test_int8_scheme_choice_is_checked_before_any_work(make_checkpoint: Callable[..., Path]) -> None:
    with pytest.raises(RDDError, match="--int8-for must be one of: x86-vnni, x86, arm64, tensorrt, got 'gpu'"):
        export(make_checkpoint("deeplabv3_mbv2"), ExportOptions(precision="int8", calib_data="synthetic",
                                                                int8_for="gpu"))
    with pytest.raises(RDDError, match="--int8-for arm64 cannot go with --trt"):
        export(make_checkpoint("deeplabv3_mbv2"), ExportOptions(trt=True, precision="int8", calib_data="synthetic",
                                                                int8_for="arm64"))


def test_calibration_errors_are_raised_after_the_build_not_swallowed(gpu: Callable[..., World],
                                                                     tmp_path: Path, exported: dict[str, Path],
                                                                     photos: list[np.ndarray]) -> None:
    world = gpu("10.3.0", fail=("memcpy",))  # the second batch's host-to-device copy fails
    with pytest.raises(RDDError, match=r"INT8 calibration failed on batch 2 of 4: RDDError: CUDA call cudaMemcpy "
                                       r"failed: cudaErrorInvalidValue; no engine written"):
        build_engine(exported["fp32"], tmp_path, EngineOptions("int8", batch=1, implicit_int8=True,
                                                               calib_images=photos), None)
    assert len(world.calibration_batches) == 1 and written(tmp_path) == [] and not world.memory


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_corrupt_or_foreign_timing_cache_starts_a_fresh_one(version: str, exported: dict[str, Path],
                                                            gpu: Callable[..., World], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    world = gpu(version)
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"\x07truncated")  # create_timing_cache returns None for it
    build_engine(exported["fp32"], tmp_path, EngineOptions(timing_cache=cache), None)
    assert "is corrupt or not a TensorRT timing cache; starting a new one" in capsys.readouterr().err
    assert ("set_timing_cache", world.device, False) in world.calls
    cache.write_bytes(trt_doubles.CACHE_MAGIC + json.dumps(["another GPU", 5]).encode())
    build_engine(exported["fp32"], tmp_path, EngineOptions(timing_cache=cache), None)
    assert "comes from another GPU or TensorRT version; starting a new one" in capsys.readouterr().err
    assert json.loads(cache.read_bytes()[len(trt_doubles.CACHE_MAGIC):]) == [world.device, 1]


@pytest.mark.parametrize(("fail", "message"), [
    ("profile", r"TensorRT refuses the optimization profile of input 'images' \(min \(1, 3, 32, 48\), opt "
                r"\(2, 3, 64, 96\), max \(2, 3, 64, 96\)\)"),
    ("parse", r"TensorRT cannot parse .*deeplabv3_mbv2_64x96_dyn.onnx: .*unsupported operator"),
    ("build", r"TensorRT could not build an engine from deeplabv3_mbv2_64x96_dyn.onnx"),
    ("deserialize", r"TensorRT .* on NVIDIA Orin \(fake\) \(compute capability 8.7\) cannot load"),
    ("wrong_logits", r"argmax agrees with ONNX Runtime on deeplabv3_mbv2_64x96_dyn.onnx on \d+\.\d+% of pixels"),
])
def test_failure_returns_are_one_line_errors_and_write_nothing(fail: str, message: str, exported: dict[str, Path],
                                                               gpu: Callable[..., World], tmp_path: Path,
                                                               photos: list[np.ndarray]) -> None:
    gpu(VERSIONS[1], fail=(fail,))
    with pytest.raises(RDDError, match=message) as error:
        build_engine(exported["fp32"], tmp_path, EngineOptions(batch=2), photos[:1])
    assert "\n" not in str(error.value) and written(tmp_path) == []


def test_profile_shapes_that_tensorrt_refuses(exported: dict[str, Path], gpu: Callable[..., World],
                                              tmp_path: Path) -> None:
    gpu(VERSIONS[2])
    with pytest.raises(RDDError, match=r"TensorRT refuses the shapes of input 'images' .*inconsistent"):
        build_engine(exported["fp32"], tmp_path, EngineOptions(profile=parse_profile("4x64x96:2x64x96:2x64x96")),
                     None)


def test_stream_handle_falls_back_to_int_on_old_cuda_python(exported: dict[str, Path], gpu: Callable[..., World],
                                                            tmp_path: Path, photos: list[np.ndarray]) -> None:
    world = gpu(VERSIONS[0], native_handles=False)  # cuda-python < 12.9.1 has no cuda.bindings.utils helper
    build_engine(exported["fp32"], tmp_path, EngineOptions(), photos[:1])
    assert world.int_handles > 0 and set(world.executions) == set(world.streams)


def test_foreign_and_static_onnx_files_are_refused_cleanly(exported: dict[str, Path], gpu: Callable[..., World],
                                                           tmp_path: Path) -> None:
    gpu(VERSIONS[2])
    plain = onnx.load(str(exported["fp32"]))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(RDDError, match=r"plain.onnx has no rdd-deploy metadata"):
        build_engine(tmp_path / "plain.onnx", tmp_path, EngineOptions(), None)
    with pytest.raises(RDDError, match="ONNX file not found"):
        build_engine(tmp_path / "missing.onnx", tmp_path, EngineOptions(), None)
    with pytest.raises(RDDError, match=r"fp16 engine from a fp32 ONNX with TensorRT 11"):
        build_engine(exported["fp32"], tmp_path, EngineOptions("fp16"), None)
    assert written(tmp_path) == ["plain.onnx"]


def test_the_doubles_are_as_strict_as_the_real_api(gpu: Callable[..., World]) -> None:
    gpu(VERSIONS[2])
    import tensorrt as trt

    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    for removed in ("FP16", "INT8"):  # TensorRT 11 removed the weak-typing flags ...
        assert not hasattr(trt.BuilderFlag, removed)
    assert not hasattr(trt, "IInt8MinMaxCalibrator")  # ... and the calibrators
    with pytest.raises(AttributeError):
        config.int8_calibrator = None
    with pytest.raises(AttributeError):
        config.set_flags(trt.BuilderFlag.TF32)  # a misspelt method
    with pytest.raises(TypeError):
        config.set_timing_cache(None, False)
    assert config.add_optimization_profile(builder.create_optimization_profile()) == -1  # an empty profile
    assert config.create_timing_cache(b"garbage") is None
    assert builder.build_serialized_network(builder.create_network(0), config) is None  # nothing parsed


def test_cuda_doubles_use_only_names_that_cuda_python_has(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    fake = cuda_modules(World(VERSIONS[0]))["cuda.bindings.runtime"]
    names = [name for name in vars(fake) if name.startswith("cuda")]
    assert names and [name for name in names if not hasattr(real, name)] == []
    assert [name for name in ("cudaSuccess", "cudaErrorInvalidValue") if not hasattr(real.cudaError_t, name)] == []


@pytest.fixture
def tensorrt_gpu() -> types.ModuleType:
    """The real tensorrt module on a machine with a CUDA GPU, else a skip that says what is missing."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'rdd-deploy[trt]')")
    from rdd_deploy.runtime.tensorrt_engine import import_cudart

    cudart = import_cudart()
    if cudart.cudaGetDeviceCount()[0] != cudart.cudaError_t.cudaSuccess:
        pytest.skip("TensorRT needs a CUDA GPU")
    return trt


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_engine_builds_verifies_and_loads_in_the_runtime(precision: str, tensorrt_gpu: types.ModuleType,
                                                              request: pytest.FixtureRequest, tmp_path: Path,
                                                              photos: list[np.ndarray]) -> None:
    from rdd_deploy.runtime import Segmenter

    trained = request.getfixturevalue("trained")  # after the skip: training costs seconds
    files = export(trained["checkpoint"], ExportOptions(trt=True, precision=precision, dynamic=True,
                                                        input_size=(64, 64), batch=2, out=tmp_path,
                                                        calib_data="synthetic:size=64,train=16,val=4",
                                                        calib_images=16))
    engine, sidecar = files[-2:]
    assert sidecar == engine.with_name(engine.name + ".json") and (tmp_path / "tensorrt.timing.cache").is_file()
    segmenter, reference = Segmenter.from_file(engine), Segmenter.from_file(files[-3])
    assert segmenter.info.precision == precision and segmenter.info.engine["tensorrt_version"]
    agree = np.mean([np.mean(segmenter.predict(p) == reference.predict(p)) for p in photos])
    assert agree >= {"fp32": 0.999, "fp16": 0.99, "int8": 0.97}[precision]
