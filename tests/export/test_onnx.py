"""FP32 ONNX export of every paper model: checker, metadata contract, static and dynamic shapes, fused input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from rdd_deploy.export import (ExportOptions, export, export_metadata, export_onnx, read_metadata,
                               revert_sync_batchnorm)
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.model_info import ModelInfo

from .helpers import MEAN, STD, agreement, ort_outputs, resized, torch_logits


def checked(path: Path) -> onnx.ModelProto:
    """Load an exported file and run the full onnx.checker on it, as a user would."""
    onnx.checker.check_model(str(path), full_check=True)
    return onnx.load(str(path))


@pytest.mark.parametrize(("name", "size"), [("deeplabv3_r18", (64, 96)), ("deeplabv3_mbv2", (64, 96)),
                                            ("pspnet_r18", (64, 96)), ("deeplabv3_r101", (32, 32))])
def test_every_paper_model_exports_and_matches_torch(name: str, size: tuple[int, int], tmp_path: Path,
                                                     make_checkpoint: Callable[..., Path],
                                                     photos: list[np.ndarray]) -> None:
    checkpoint = make_checkpoint(name)
    files = export(checkpoint, ExportOptions(input_size=size, out=tmp_path))
    assert files == [tmp_path / f"{name}_{size[0]}x{size[1]}.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [files[0].name]  # no temporary files left behind
    model = checked(files[0])
    assert model.opset_import[0].version >= 17
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, *size]
    pixels = resized(photos, size)
    reference = torch_logits(checkpoint, pixels)
    logits = np.concatenate([ort_outputs(files[0], pixels[i:i + 1])[0] for i in range(len(pixels))])
    assert logits.shape == (len(photos), 3, *size)
    assert agreement(reference, logits) >= 0.999
    # Relative to the logits' scale: a deep random network's logits reach the hundreds.
    assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.mark.parametrize("name", ["deeplabv3_mbv2", "pspnet_r18"])  # image pooling; pyramid bins 3 and 6
def test_dynamic_export_matches_torch_at_other_sizes_and_batches(name: str, tmp_path: Path,
                                                                make_checkpoint: Callable[..., Path],
                                                                photos: list[np.ndarray]) -> None:
    checkpoint = make_checkpoint(name)
    [path] = export(checkpoint, ExportOptions(input_size=(64, 64), dynamic=True, out=tmp_path))
    assert path.name == f"{name}_64x64_dyn.onnx"
    dims = [d.dim_param or d.dim_value for d in checked(path).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    # 40x56 gives a 5x7 feature map: PSPNet's 6 bins then overlap, 3 bins do not divide either side.
    for size in ((48, 80), (40, 56), (96, 72)):
        pixels = resized(photos[:2], size)
        reference = torch_logits(checkpoint, pixels)
        [logits] = ort_outputs(path, pixels)  # batch 2
        assert logits.shape == (2, 3, *size)
        assert agreement(reference, logits) >= 0.999
        assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.fixture(scope="module")
def fused(make_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DeepLabV3-MobileNetV2 taking raw uint8 NHWC pixels and returning logits and the argmax mask."""
    options = ExportOptions(input_size=(64, 96), fused_preprocess=True, argmax=True,
                            out=tmp_path_factory.mktemp("fused"))
    return export(make_checkpoint("deeplabv3_mbv2"), options)[0]


def test_fused_uint8_input_and_argmax_match_torch_on_a_photo(fused: Path, make_checkpoint: Callable[..., Path],
                                                            photos: list[np.ndarray]) -> None:
    graph = checked(fused)
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 64, 96, 3]
    assert [o.name for o in graph.graph.output] == ["logits", "mask"]
    assert not any(n.op_type == "TopK" for n in graph.graph.node)  # TensorRT's slow path
    cat = resized([photos[2]], (64, 96))  # scikit-image's chelsea
    logits, mask = ort_outputs(fused, cat, fused=True)
    reference = torch_logits(make_checkpoint("deeplabv3_mbv2"), cat)
    assert mask.dtype == np.int32 and mask.shape == (1, 64, 96)
    assert np.array_equal(mask, logits.argmax(1))
    assert float((mask == reference.argmax(1)).mean()) >= 0.999
    assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()


def test_metadata_round_trips_through_the_runtime(fused: Path, photos: list[np.ndarray]) -> None:
    raw = {p.key: p.value for p in onnx.load(str(fused)).metadata_props}
    info = ModelInfo.parse(raw, str(fused))
    assert info == ModelInfo(model_name="deeplabv3_mbv2", num_classes=3, class_names=("sky", "road", "car"),
                             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_layout="NHWC_uint8",
                             input_size=(64, 96), dynamic=False, precision="fp32", ignore_index=255,
                             torch_miou=0.5)
    meta = {"class_names": ["sky", "road", "car"], "mean": MEAN, "std": STD, "miou": 0.5}
    assert read_metadata(fused) == export_metadata(meta, "deeplabv3_mbv2", 3, (64, 96), False, True, "fp32")
    segmenter = Segmenter.from_file(fused)
    assert segmenter.info == info
    mask = segmenter.predict(photos[0])  # any photo size: the Segmenter resizes to the static 64x96
    assert mask.shape == photos[0].shape[:2] and set(np.unique(mask)) <= {0, 1, 2}


def test_aux_head_is_left_out_and_the_palette_kept(make_checkpoint: Callable[..., Path], tmp_path: Path,
                                                  photos: list[np.ndarray]) -> None:
    checkpoint = make_checkpoint("deeplabv3_mbv2", aux_head=True)  # a teacher or distilled student layout
    [path] = export(checkpoint, ExportOptions(input_size=(64, 64), out=tmp_path))
    assert [o.name for o in checked(path).graph.output] == ["logits"]
    assert Segmenter.from_file(path).info.palette == ((0, 0, 0), (128, 64, 128), (0, 0, 142))
    pixels = resized(photos[:1], (64, 64))
    assert agreement(torch_logits(checkpoint, pixels), ort_outputs(path, pixels)[0]) >= 0.999


def test_missing_meta_falls_back_to_the_contract_defaults() -> None:
    metadata = export_metadata({"class_names": None, "miou": None}, "pspnet_r18", 2, (64, 64), True, False, "fp32")
    info = ModelInfo.parse(metadata, "sidecar")  # the native-JSON form a TensorRT sidecar carries
    assert info.class_names == ("class_0", "class_1") and info.ignore_index == 255 and info.torch_miou is None
    assert info.dynamic and info.input_layout == "NCHW_float"


def test_sync_batchnorm_is_converted_back_for_export(make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    from rdd_deploy.checkpoint import model_from_checkpoint
    from rdd_deploy.models import FullResolution

    model, meta = model_from_checkpoint(make_checkpoint("deeplabv3_mbv2"))
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
    reverted = revert_sync_batchnorm(synced).eval()
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in reverted.modules())
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(FullResolution(reverted)(images), FullResolution(model)(images))
    metadata = export_metadata(meta, "deeplabv3_mbv2", 3, (64, 64), False, False, "fp32")
    path = export_onnx(synced, tmp_path / "synced.onnx", metadata)  # SyncBatchNorm does not export as is
    assert {n.op_type for n in checked(path).graph.node}.isdisjoint({"SyncBatchNorm"})
