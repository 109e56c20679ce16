"""Segmenter on tiny ONNX models: dynamic, static (resize back), raw-pixel layout, and every bad input."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.preprocess import normalize, resize_image


def torch_logits(net: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The PyTorch model on the project's preprocessing: [C, H, W]."""
    with torch.no_grad():
        return net(torch.from_numpy(normalize(image))[None])[0].numpy()


PROVIDERS = {"onnxruntime": "CPUExecutionProvider", "openvino": "CPU f32"}


def test_dynamic_model_runs_at_image_size(dynamic_onnx: Path, tiny_net, photo: np.ndarray, backend: str) -> None:
    segmenter = Segmenter.from_file(dynamic_onnx, backend)
    assert segmenter.dynamic and segmenter.engine.provider == PROVIDERS[backend]
    mask = segmenter.predict(photo)
    expected = torch_logits(tiny_net, photo)
    assert mask.shape == photo.shape[:2] and mask.dtype == np.uint8
    np.testing.assert_allclose(segmenter.logits(photo), expected, atol=1e-4)
    assert np.array_equal(mask, expected.argmax(0))


def test_static_model_maps_logits_back_to_image_size(static_onnx: Path, tiny_net, photo: np.ndarray,
                                                     backend: str) -> None:
    segmenter = Segmenter.from_file(static_onnx, backend)
    assert not segmenter.dynamic and segmenter.static_size == (64, 64)
    logits = segmenter.logits(photo)
    small = torch.from_numpy(torch_logits(tiny_net, resize_image(photo, (64, 64))))[None]
    expected = F.interpolate(small, size=photo.shape[:2], mode="bilinear", align_corners=False)[0].numpy()
    assert logits.shape == (3, 75, 101)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert segmenter.predict(photo).shape == (75, 101)


def test_raw_pixel_layout_matches_normalised_layout(nhwc_onnx: Path, dynamic_onnx: Path, photo: np.ndarray,
                                                    backend: str) -> None:
    raw = Segmenter.from_file(nhwc_onnx, backend)
    assert raw.engine.input_dtype == np.uint8
    np.testing.assert_allclose(raw.logits(photo), Segmenter.from_file(dynamic_onnx).logits(photo), atol=1e-4)


def test_predict_batch_mixed_sizes_and_paths(dynamic_onnx: Path, photo: np.ndarray, tmp_path: Path,
                                             backend: str) -> None:
    segmenter = Segmenter.from_file(dynamic_onnx, backend)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    masks = segmenter.predict_batch([photo, photo[:40, :50], path])
    assert [m.shape for m in masks] == [(75, 101), (40, 50), (75, 101)]
    assert np.array_equal(masks[0], masks[2])
    assert np.array_equal(masks[1], segmenter.predict(photo[:40, :50]))


@pytest.mark.parametrize("mode, suffix, words", [("I;16", ".png", "16-bit grayscale image (PIL mode 'I;16')"),
                                                  ("F", ".tif", "float grayscale image (PIL mode 'F')"),
                                                  ("CMYK", ".jpg", "CMYK image (PIL mode 'CMYK')")])
def test_image_without_an_8_bit_rgb_meaning_is_one_clear_error(dynamic_onnx: Path, tmp_path: Path, mode: str,
                                                                suffix: str, words: str) -> None:
    path = tmp_path / f"image{suffix}"
    Image.new(mode, (64, 64)).save(path)
    with pytest.raises(RDDError, match=re.escape(f"{path} is a {words}; the model needs 8-bit RGB")):
        Segmenter.from_file(dynamic_onnx).predict(path)


def test_multi_page_file_is_one_clear_error(dynamic_onnx: Path, photo: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    Image.fromarray(photo).save(path, save_all=True, append_images=[Image.fromarray(photo[::-1])])
    with pytest.raises(RDDError, match=re.escape(f"{path} holds 2 frames (multi-page or animated)")):
        Segmenter.from_file(dynamic_onnx).predict(path)


def test_grayscale_alpha_and_palette_images_are_converted_to_rgb(dynamic_onnx: Path, photo: np.ndarray,
                                                                 tmp_path: Path) -> None:
    segmenter = Segmenter.from_file(dynamic_onnx)
    gray = photo.mean(axis=2).round().astype(np.uint8)
    alpha = np.full(photo.shape[:2], 7, np.uint8)  # nearly transparent: dropped, not composited
    palette = Image.fromarray(photo).quantize(16)
    cases = {"RGBA": (np.dstack([photo, alpha]), photo), "L": (gray, np.dstack([gray] * 3)),
             "LA": (np.dstack([gray, alpha]), np.dstack([gray] * 3)),
             "P": (palette, np.asarray(palette.getpalette()[:48], np.uint8).reshape(16, 3)[np.asarray(palette)])}
    for mode, (pixels, rgb) in cases.items():
        path = tmp_path / f"{mode}.png"
        (pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels, mode)).save(path)
        assert Image.open(path).mode == mode
        assert np.array_equal(segmenter.predict(path), segmenter.predict(rgb)), mode


def test_too_small_image(static_onnx: Path) -> None:
    with pytest.raises(RDDError, match="20x40 pixels; images need at least 32 px"):
        Segmenter.from_file(static_onnx).predict(np.zeros((20, 40, 3), np.uint8))


def test_missing_and_corrupt_model_files(tmp_path: Path, backend: str) -> None:
    with pytest.raises(RDDError, match="model file not found: .*nothing.onnx"):
        Segmenter.from_file(tmp_path / "nothing.onnx", backend)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(RDDError, match=f"cannot load ONNX model {corrupt}"):
        Segmenter.from_file(corrupt, backend)


def test_model_without_metadata(tiny_net, exporter, tmp_path: Path, backend: str) -> None:
    path = exporter(tiny_net, tmp_path / "bare.onnx", meta={})
    with pytest.raises(RDDError, match="bare.onnx has no rdd-deploy metadata"):
        Segmenter.from_file(path, backend)


def test_bad_metadata_field_is_named(tiny_net, exporter, make_metadata, tmp_path: Path, backend: str) -> None:
    path = exporter(tiny_net, tmp_path / "names.onnx", meta=make_metadata(class_names=["a", "b"]))
    with pytest.raises(RDDError, match="'class_names' has 2 names for 3 classes"):
        Segmenter.from_file(path, backend)


class OneChannel(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.repeat(1, 3, 1, 1)


def test_model_input_not_an_image_batch(exporter, make_metadata, tmp_path: Path, backend: str) -> None:
    import onnx

    path = exporter(OneChannel(), tmp_path / "gray.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 1
    onnx.save(model, str(path))
    with pytest.raises(RDDError, match=r"input 'images' has shape \[\?, 1, \?, \?\]; expected an image batch"):
        Segmenter.from_file(path, backend)


def test_backend_must_fit_the_file(dynamic_onnx: Path) -> None:
    with pytest.raises(RDDError, match="tensorrt backend runs serialized engines"):
        Segmenter.from_file(dynamic_onnx, backend="tensorrt")
    with pytest.raises(RDDError, match="execution provider CUDAExecutionProvider is not available"):
        Segmenter.from_file(dynamic_onnx, providers=["CUDAExecutionProvider"])
    with pytest.raises(RDDError, match="precision hint 'bf16' is an OpenVINO setting; add --backend openvino"):
        Segmenter.from_file(dynamic_onnx, precision_hint="bf16")


def test_missing_openvino_is_one_line_naming_the_extra(dynamic_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(RDDError) as error:
        Segmenter.from_file(dynamic_onnx, backend="openvino")
    assert str(error.value) == "OpenVINO is not installed: pip install 'rdd-deploy[openvino]'"
