"""The official variant and `rdd-deploy convert --from cirkd`: an official file converts, predicts what the official
model predicts, and its fused-preprocessing ONNX export fed uint8 RGB does too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from rdd_deploy.checkpoint import load_checkpoint, model_from_checkpoint
from rdd_deploy.cli import app
from rdd_deploy.errors import RDDError
from rdd_deploy.export import ExportOptions, export
from rdd_deploy.models import build_model
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.preprocess import CAFFE_BGR_MEAN

from .official_reference import OfficialSegmentor, randomize

runner = CliRunner()
OFFICIAL_MODELS = ["deeplabv3_r101", "deeplabv3_r18", "deeplabv3_mbv2", "pspnet_r18"]
KEY_COUNTS = {"deeplabv3_r101": 688, "deeplabv3_r18": 190, "deeplabv3_mbv2": 350, "pspnet_r18": 178}


def official_input(image: np.ndarray) -> torch.Tensor:
    """What the official code feeds its networks: BGR, 0-255, minus the Caffe mean, no std, NCHW float32."""
    bgr = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)[None].float()
    return bgr - torch.tensor(CAFFE_BGR_MEAN, dtype=torch.float32).view(1, 3, 1, 1)


def convert(tmp_path: Path, name: str, num_classes: int = 19, width: int | None = None,
            dataset: str | None = "cityscapes") -> tuple[torch.nn.Module, Path]:
    reference = randomize(OfficialSegmentor(name, num_classes, width))
    source = tmp_path / f"{name}_citys_best_model.pth"
    torch.save(reference.state_dict(), source)
    out = tmp_path / f"{name}.pt"
    args = ["convert", str(source), "--from", "cirkd", "--model", name, "--num-classes", str(num_classes),
            "--out", str(out)] + (["--dataset", dataset] if dataset else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return reference, out


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFICIAL_MODELS)
def test_converted_file_and_its_fused_onnx_predict_what_the_official_model_predicts(name, tmp_path):
    reference, checkpoint = convert(tmp_path, name)
    assert len(reference.state_dict()) == KEY_COUNTS[name]
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    x = official_input(image)
    model, meta = model_from_checkpoint(checkpoint)
    with torch.no_grad():
        expected = reference(x)
        np.testing.assert_allclose(model(x)["out"].numpy(), expected.numpy(), rtol=0, atol=1e-5)
        full = F.interpolate(expected, size=x.shape[-2:], mode="bilinear", align_corners=True).numpy()
    assert meta["channel_order"] == "BGR" and meta["align_corners"] is True
    assert meta["class_names"][0] == "road" and len(meta["palette"]) == 19
    spec = load_checkpoint(checkpoint)["model_spec"]
    assert spec["variant"] == "official" and spec["head_channels"] == (256 if name == "deeplabv3_r101" else 128)

    files = export(checkpoint, ExportOptions(input_size=(64, 96), fused_preprocess=True, out=tmp_path, verify=False))
    segmenter = Segmenter.from_file(files[0])
    assert segmenter.info.channel_order == "BGR" and segmenter.info.input_layout == "NHWC_uint8"
    logits = segmenter.engine.run(image[None])
    np.testing.assert_allclose(logits, full, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_unfused_export_and_runtime_normalise_in_bgr(tmp_path):
    reference, checkpoint = convert(tmp_path, "deeplabv3_mbv2", num_classes=5, dataset=None)
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = F.interpolate(reference(official_input(image)), size=(64, 64), mode="bilinear",
                                 align_corners=True).numpy()[0]
    files = export(checkpoint, ExportOptions(input_size=(64, 64), out=tmp_path, verify=False))
    np.testing.assert_allclose(Segmenter.from_file(files[0]).logits(image), expected, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_head_width_comes_from_the_file(tmp_path):
    # CIRKD's code since 2025 builds every ASPP 512 wide; the width is read from the tensors, not assumed.
    reference, checkpoint = convert(tmp_path, "deeplabv3_r18", width=512)
    assert load_checkpoint(checkpoint)["model_spec"]["head_channels"] == 512
    x = official_input(np.full((32, 32, 3), 90, np.uint8))
    model, _ = model_from_checkpoint(checkpoint)
    with torch.no_grad():
        np.testing.assert_allclose(model(x)["out"].numpy(), reference(x).numpy(), rtol=0, atol=1e-5)


def test_a_tensor_that_does_not_fit_is_named(tmp_path):
    state = randomize(OfficialSegmentor("deeplabv3_r18", 19)).state_dict()
    state["pretrained.layer3.0.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    source = tmp_path / "bad.pth"
    torch.save(state, source)
    result = runner.invoke(app, ["convert", str(source), "--from", "cirkd", "--model", "deeplabv3_r18",
                                 "--num-classes", "19", "--out", str(tmp_path / "out.pt")])
    assert isinstance(result.exception, RDDError)
    message = str(result.exception)
    assert "'pretrained.layer3.0.conv2.weight' has shape (256, 256, 1, 1)" in message and "\n" not in message
    assert "(256, 256, 3, 3)" in message and not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.pop("pretrained.bn3.running_var"), "lacks 1 tensors"),
    (lambda s: s.update({"head.extra.weight": torch.zeros(1)}), "'head.extra.weight' has no counterpart"),
    (lambda s: s.update({"head.block.4.weight": torch.zeros(7, 128, 1, 1)}), "predicts 7 classes"),
])
def test_a_file_of_another_model_is_refused(tmp_path, change, expected):
    state = randomize(OfficialSegmentor("deeplabv3_r18", 19)).state_dict()
    change(state)
    source = tmp_path / "other.pth"
    torch.save(state, source)
    result = runner.invoke(app, ["convert", str(source), "--from", "cirkd", "--model", "deeplabv3_r18",
                                 "--num-classes", "19", "--out", str(tmp_path / "out.pt")])
    assert isinstance(result.exception, RDDError) and expected in str(result.exception)


def test_official_dilation_convention():
    # torchvision's replace_stride_with_dilation gives layer3.0 dilation 1 on both convolutions, layer4.0 2 on both.
    official = build_model("deeplabv3_r18", 3, variant="official")
    conv = official.backbone.layer3[0].conv1, official.backbone.layer3[0].conv2
    assert (conv[0].dilation, conv[1].dilation) == ((1, 1), (2, 2))
    assert official.backbone.layer4[0].conv1.dilation == (2, 2) and official.backbone.layer4[0].conv2.dilation == (4, 4)
    features = build_model("deeplabv3_mbv2", 3, variant="official").backbone.features
    assert features[7].conv[1][0].dilation == (1, 1) and features[8].conv[1][0].dilation == (2, 2)
    assert features[14].conv[1][0].dilation == (2, 2) and features[15].conv[1][0].dilation == (4, 4)


def test_models_command_lists_the_variants():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    line = next(row for row in result.output.splitlines() if row.startswith("deeplabv3_r18 "))
    assert "official" in line
    with pytest.raises(RDDError, match="no variant 'official'"):
        build_model("pspnet_mbv2", 3, variant="official")
