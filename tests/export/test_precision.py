"""FP16 and INT8 (QDQ) ONNX variants of a model trained a little: smaller files within the parity tolerances."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from rdd_deploy.export import ExportOptions, Verifier, export, export_onnx_int8
from rdd_deploy.export.graph import read_metadata
from rdd_deploy.export.quantize import SCHEMES, TENSORRT_SCHEME, ImageCalibrationReader, calibrate, host_scheme
from rdd_deploy.runtime.int8_targets import host_int8_target
from rdd_deploy.export.verify import torch_reference
from rdd_deploy.models import FullResolution
from rdd_deploy.runtime.parity import TOLERANCES

from .helpers import MEAN, STD, agreement, ort_outputs, resized, torch_logits

SIZE = (64, 64)


@pytest.fixture(scope="module")
def variants(trained: dict, photos: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FP32 + FP16 through `export`, and INT8 calibrated on the training images (MinMax), all self-verified."""
    from rdd_deploy.checkpoint import model_from_checkpoint

    out = tmp_path_factory.mktemp("variants")
    fp32, fp16 = export(trained["checkpoint"], ExportOptions(precision="fp16", input_size=SIZE, out=out))
    model, _ = model_from_checkpoint(trained["checkpoint"])
    verifier = Verifier(torch_reference(FullResolution(model).eval(), MEAN, STD), photos + trained["held_out"],
                        tuple(MEAN), tuple(STD), False, [(1, *SIZE)])
    int8 = export_onnx_int8(fp32, out / "r18_int8.onnx", read_metadata(fp32), trained["calibration"], "minmax",
                            verifier)
    return {"fp32": fp32, "fp16": fp16, "int8": int8}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("images", ["photos", "held_out"])
def test_reduced_precision_meets_its_parity_tolerance(precision: str, images: str, variants: dict[str, Path],
                                                      trained: dict, photos: list[np.ndarray]) -> None:
    pixels = resized(photos if images == "photos" else trained["held_out"], SIZE)
    reference = torch_logits(trained["checkpoint"], pixels)
    logits = np.concatenate([ort_outputs(variants[precision], pixels[i:i + 1])[0] for i in range(len(pixels))])
    assert logits.dtype == np.float32  # FP32 outputs kept for the user whatever the precision inside
    share = agreement(reference, logits)
    error = np.abs(logits - reference)
    print(f"{precision} on {images}: agreement {share:.4%}, max |dlogit| {error.max():.3g}, mean {error.mean():.3g}")
    assert share >= TOLERANCES[precision][0] / 100
    assert error.mean() < (0.05 if precision == "fp16" else 0.5)


@pytest.mark.parametrize("precision, hint", [("fp32", "bf16"), ("int8", "f32")])
def test_openvino_runs_the_same_files_within_their_tolerance(precision: str, hint: str, variants: dict[str, Path],
                                                             trained: dict, photos: list[np.ndarray]) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'rdd-deploy[openvino]')")
    from rdd_deploy.parity import torch_segmenter
    from rdd_deploy.runtime import Segmenter, compare
    from rdd_deploy.runtime.openvino_engine import cpu_capabilities

    if hint == "bf16" and "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no bf16 in OpenVINO")
    candidate = Segmenter.from_file(variants[precision], "openvino", precision_hint=hint)
    reference = torch_segmenter(trained["checkpoint"], like=candidate, device="cpu")
    report = compare(reference, candidate, [(image, None) for image in photos + trained["held_out"]])
    print(f"OpenVINO {precision} file at {hint}: agreement {report.agreement:.3f} %")
    assert report.precision == ("bf16" if hint == "bf16" else precision) and report.passed, report.failures


def test_variants_are_smaller_and_say_what_they_are(variants: dict[str, Path]) -> None:
    sizes = {precision: path.stat().st_size for precision, path in variants.items()}
    assert sizes["fp16"] < 0.55 * sizes["fp32"] and sizes["int8"] < 0.3 * sizes["fp32"]
    for precision, path in variants.items():
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        props = {p.key: p.value for p in model.metadata_props}
        assert props["precision"] == precision and props["model_name"] == "deeplabv3_r18"
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    nodes = onnx.load(str(variants["int8"])).graph.node
    weights = [n for n in nodes if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)]
    assert weights, "per-channel weight quantisation expected"
    assert sum(n.op_type == "QuantizeLinear" for n in nodes) > 10
    props = {p.key: p.value for p in onnx.load(str(variants["int8"])).metadata_props}
    assert json.loads(props["calibration"]) == {"method": "minmax", "images": 16}
    assert json.loads(props["int8"]) == host_scheme().to_metadata()  # which device the file was tuned for


def test_calibration_methods_give_different_ranges(variants: dict[str, Path], trained: dict,
                                                   tmp_path: Path) -> None:
    reader = ImageCalibrationReader(trained["calibration"][:8], SIZE, 1, "NCHW_float", tuple(MEAN), tuple(STD))
    ranges = {method: calibrate(variants["fp32"], reader, method, tmp_path)
              for method in ("minmax", "entropy", "percentile")}
    assert ranges["minmax"].keys() == ranges["entropy"].keys() == ranges["percentile"].keys()
    width = {method: sum(high - low for low, high in r.values()) for method, r in ranges.items()}
    # Entropy and percentile clip the outliers that min/max keeps.
    assert width["entropy"] < width["minmax"] and width["percentile"] < width["minmax"]


def test_overflowing_logits_fail_verification_with_the_reason(photos: list[np.ndarray]) -> None:
    import torch

    from rdd_deploy.errors import RDDError

    verifier = Verifier(torch_reference(torch.nn.Conv2d(3, 3, 1).eval(), MEAN, STD), photos[:1], tuple(MEAN),
                        tuple(STD), False, [(1, 32, 32)])

    def overflowing(feed: np.ndarray) -> list[np.ndarray]:
        logits = np.zeros((1, 3, 32, 32), np.float32)
        logits[0, :, 0, 0] = np.inf
        return [logits]

    with pytest.raises(RDDError, match="3 logits are NaN or infinite at 1x32x32 .* export fp32 or int8 instead"):
        verifier.check(overflowing, "fp16", "model_fp16.onnx")


def test_pspnet_pooling_stays_float_in_a_dynamic_int8_graph(make_checkpoint: Callable[..., Path], trained: dict,
                                                           tmp_path: Path) -> None:
    [fp32] = export(make_checkpoint("pspnet_r18"), ExportOptions(input_size=SIZE, dynamic=True, out=tmp_path,
                                                                 verify=False))
    int8 = export_onnx_int8(fp32, tmp_path / "psp_int8.onnx", read_metadata(fp32), trained["calibration"][:4])
    graph = onnx.load(str(int8)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    assert len(matmuls) == 8  # two per pyramid level
    # The averaging matrices stay float; only the feature map, shared with the quantised convolutions, is Q/DQ.
    assert all(sum(producers.get(name) == "DequantizeLinear" for name in node.input) <= 1 for node in matmuls)
    [logits] = ort_outputs(int8, resized(trained["held_out"][:2], (48, 80)))  # batch 2, another size
    assert logits.shape == (2, 3, 48, 80) and np.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deeplabv3_r18", "deeplabv3_mbv2", "pspnet_r18"])
def test_every_conv_runs_as_an_integer_kernel_in_onnx_runtime(name: str, make_checkpoint: Callable[..., Path],
                                                               trained: dict, tmp_path: Path) -> None:
    import onnxruntime as ort

    [fp32] = export(make_checkpoint(name), ExportOptions(input_size=SIZE, out=tmp_path, verify=False))
    int8 = export_onnx_int8(fp32, tmp_path / "int8.onnx", read_metadata(fp32), trained["calibration"][:4])
    convs = sum(node.op_type == "Conv" for node in onnx.load(str(fp32)).graph.node)
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(tmp_path / f"optimised_{level.name}.onnx")
        ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
        ops = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
        assert not {"Conv", "FusedConv", "NhwcFusedConv"} & set(ops), f"float convolutions left at {level.name}"
        assert ops.count("QLinearConv") == convs


def test_each_int8_target_follows_onnx_runtime_advice_for_its_device() -> None:
    assert host_int8_target("x86_64", {"avx2", "avx512bw", "avx512_vnni"}) == "x86-vnni"
    assert host_int8_target("x86_64", {"avx2", "fma", "avx_vnni"}) == "x86-vnni"  # Alder Lake's AVX-VNNI
    assert host_int8_target("x86_64", {"avx2", "fma"}) == "x86"
    assert host_int8_target("aarch64", {"asimd", "asimddp"}) == "arm64"
    assert host_int8_target("ppc64le", set()) is None
    vnni, avx2, arm = SCHEMES["x86-vnni"], SCHEMES["x86"], SCHEMES["arm64"]
    for scheme in (vnni, avx2, arm):  # U8S8 everywhere: asymmetric uint8 activations fold each Relu
        assert (scheme.activation_type, scheme.activation_symmetric) == ("QUInt8", False)
    assert avx2.reduce_range and not vnni.reduce_range and not arm.reduce_range  # VPMADDUBSW saturates 8-bit weights
    assert "7-bit" in avx2.to_metadata()["weights"] and "7-bit" not in arm.to_metadata()["weights"]
    assert (TENSORRT_SCHEME.activation_type, TENSORRT_SCHEME.activation_symmetric) == ("QInt8", True)
    assert {name: scheme.to_metadata()["target"] for name, scheme in SCHEMES.items()} == {n: n for n in SCHEMES}


def test_the_tensorrt_scheme_quantises_activations_symmetrically(make_checkpoint: Callable[..., Path],
                                                                 trained: dict, tmp_path: Path) -> None:
    from onnx import numpy_helper

    [fp32] = export(make_checkpoint("deeplabv3_mbv2"), ExportOptions(input_size=SIZE, out=tmp_path, verify=False))
    files = {scheme.target: export_onnx_int8(fp32, tmp_path / f"{i}.onnx", read_metadata(fp32),
                                             trained["calibration"][:2], scheme=scheme)
             for i, scheme in enumerate((TENSORRT_SCHEME, host_scheme()))}
    for target, path in files.items():
        graph = onnx.load(str(path)).graph
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        points = [constants[node.input[2]] for node in graph.node if node.op_type == "QuantizeLinear"]
        types = {point.dtype for point in points}
        if target == TENSORRT_SCHEME.target:  # TensorRT rejects a non-zero zero point or uint8
            assert types == {np.dtype(np.int8)} and not any(point.any() for point in points)
        else:
            assert types == {np.dtype(np.uint8)} and any(point.any() for point in points)


@pytest.mark.slow
def test_an_int8_file_for_another_device_is_verified_as_its_qdq_graph_computes(
        make_checkpoint: Callable[..., Path], photos: list[np.ndarray], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU's integer kernels are not the device's (x86 without VNNI saturates 8-bit weights): a file for
    another device is checked with graph optimisations off, DequantizeLinear -> float op -> QuantizeLinear."""
    from rdd_deploy.export import quantize

    [fp32] = export(make_checkpoint("deeplabv3_mbv2"), ExportOptions(input_size=SIZE, out=tmp_path, verify=False))
    float_qdq_runs: list[bool] = []

    class Recorder:
        def check(self, runner: Callable, precision: str, name: str) -> None:
            assert np.isfinite(runner(np.zeros((1, 3, *SIZE), np.float32))[0]).all()

    def runner(path: Path, float_qdq: bool = False) -> Callable:
        float_qdq_runs.append(float_qdq)
        return real(path, float_qdq)

    real = quantize.onnx_runner
    monkeypatch.setattr(quantize, "onnx_runner", runner)
    host = host_int8_target()
    other = "arm64" if host != "arm64" else "x86"
    for target in (host, other, "tensorrt"):
        export_onnx_int8(fp32, tmp_path / f"{target}.onnx", read_metadata(fp32), photos[:2], verifier=Recorder(),
                         scheme=SCHEMES[target])
    assert float_qdq_runs == [False, True, True]
