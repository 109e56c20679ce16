"""TensorRT backend: real engines where TensorRT and a GPU exist; the error paths everywhere."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import trt_doubles
from trt_doubles import World

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.tensorrt_engine import TENSORRT_MISSING

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_tensorrt = pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed (needs a CUDA GPU and "
                                                              "pip install 'rdd-deploy[trt]')")


def write_engine(path: Path, plan: bytes, meta: dict) -> Path:
    path.write_bytes(plan)
    path.with_name(path.name + ".json").write_text(json.dumps(meta))
    return path


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_says_what_to_install(tmp_path: Path, make_metadata) -> None:
    plan = write_engine(tmp_path / "model.engine", b"plan", make_metadata())
    with pytest.raises(RDDError) as error:
        Segmenter.from_file(plan)
    assert str(error.value) == TENSORRT_MISSING


def test_engine_from_another_gpu_names_both(tmp_path: Path, make_metadata, monkeypatch: pytest.MonkeyPatch) -> None:
    trt_doubles.install(monkeypatch, World("10.3.0", device="NVIDIA H100 80GB HBM3", capability=(9, 0),
                                           fail={"deserialize"}))
    meta = make_metadata(tensorrt_version="10.3.0", device_name="Orin", compute_capability="8.7")
    plan = write_engine(tmp_path / "model.engine", b"plan", meta)
    with pytest.raises(RDDError, match=r"TensorRT 10\.3\.0 on NVIDIA H100 80GB HBM3 \(compute capability 9\.0\) "
                                       r"cannot load .*model\.engine, built with TensorRT 10\.3\.0 on Orin "
                                       r"\(compute capability 8\.7\)"):
        Segmenter.from_file(plan)


def test_engine_without_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt_doubles.install(monkeypatch, World("11.1.0"))
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"plan")
    with pytest.raises(RDDError, match="has no metadata sidecar .*model.engine.json"):
        Segmenter.from_file(plan)


@pytest.fixture(params=["doubles", pytest.param("tensorrt", marks=[pytest.mark.trt, needs_tensorrt])])
def tensorrt_api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> World | None:
    """The strict TensorRT 10.16 / cuda-python doubles (their World), or the real TensorRT on a GPU (None)."""
    if request.param == "tensorrt":
        return None
    world = World("10.16.0.72")
    trt_doubles.install(monkeypatch, world)
    return world


def test_built_engine_matches_onnxruntime(tensorrt_api: World | None, dynamic_onnx: Path, make_metadata,
                                          tmp_path: Path) -> None:
    import tensorrt as trt

    from rdd_deploy.runtime.tensorrt_engine import import_cudart

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(dynamic_onnx))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 128, 128))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    _, props = import_cudart().cudaGetDeviceProperties(0)
    gpu = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    meta = make_metadata(tensorrt_version=trt.__version__, device_name=gpu,
                         compute_capability=f"{props.major}.{props.minor}")
    engine_path = write_engine(tmp_path / "model.engine", bytes(plan), meta)
    segmenter, reference = Segmenter.from_file(engine_path), Segmenter.from_file(dynamic_onnx)
    assert segmenter.engine.backend == "tensorrt" and segmenter.engine.shape_limits[1] == (2, 3, 128, 128)
    rng = np.random.default_rng(0)
    for size in [(96, 120), (40, 48)]:  # the second call reuses the first call's larger buffers
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        np.testing.assert_allclose(segmenter.logits(image), reference.logits(image), atol=1e-3)
    with pytest.raises(RDDError, match="takes images from 32x32 to 128x128 pixels"):
        segmenter.predict(np.zeros((200, 64, 3), np.uint8))
    if tensorrt_api is not None:  # the doubles saw every run on the engine's own stream, none through int()
        assert len(tensorrt_api.executions) == 2 and set(tensorrt_api.executions) == set(tensorrt_api.streams)
        assert tensorrt_api.int_handles == 0


@pytest.mark.parametrize("cuda_python", ["12.6.3", "12.8.0", "12.9.4", "13.0.1"])
def test_no_driver_is_one_line_on_every_cuda_python(cuda_python: str, tmp_path: Path, make_metadata,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """12.6-12.8 raise RuntimeError("Failed to dlopen libcuda.so.1"), 12.9+ return cudaErrorInsufficientDriver."""
    world = World("10.3.0", driver=False, cuda_python=cuda_python)
    trt_doubles.install(monkeypatch, world)
    plan = write_engine(tmp_path / "model.engine", b"plan", make_metadata())
    with pytest.raises(RDDError, match=r"^no NVIDIA driver \(cudaGetDeviceCount: (Failed to dlopen libcuda\.so\.1|"
                                       r"cudaErrorInsufficientDriver)\)$"):
        Segmenter.from_file(plan)
