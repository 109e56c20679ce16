"""ImageNet initialisation: torchvision's weights API (through a torch hub folder the test fills, never the network)
and local files in torchvision's or the CSAIL layout."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from rdd_deploy.errors import RDDError
from rdd_deploy.models import build_model

from .official_reference import BasicV1b, MobileNetV2Net, ResNetV1s, randomize


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder; any download attempt fails as it does offline."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub" / "checkpoints"


def test_imagenet_comes_from_the_torch_hub_cache(hub: Path) -> None:
    weights = randomize(mobilenet_v2()).state_dict()
    hub.mkdir(parents=True)
    torch.save(weights, hub / Path(MobileNet_V2_Weights.IMAGENET1K_V1.url).name)
    model = build_model("deeplabv3_mbv2", 3, pretrained="imagenet")
    for key in ("features.0.0.weight", "features.17.conv.2.weight", "features.5.conv.1.1.running_var"):
        assert torch.equal(model.backbone.state_dict()[key], weights[key])


def test_offline_imagenet_names_the_file_and_the_folder(hub: Path) -> None:
    with pytest.raises(RDDError) as error:
        build_model("deeplabv3_r18", 3, pretrained="imagenet")
    message = str(error.value)
    assert "resnet18-f37072fd.pth" in message and str(hub / "resnet18-f37072fd.pth") in message and "\n" not in message


def test_official_resnet_asks_for_the_csail_file(hub: Path) -> None:
    with pytest.raises(RDDError, match="resnet18-imagenet.pth"):
        build_model("deeplabv3_r18", 3, pretrained="imagenet", variant="official")


def test_csail_deep_stem_resnet_file_loads_into_the_official_variant(tmp_path: Path) -> None:
    state = randomize(ResNetV1s(BasicV1b, [2, 2, 2, 2])).state_dict()
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save({**state, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    backbone = build_model("deeplabv3_r18", 3, pretrained=path, variant="official").backbone.state_dict()
    assert all(torch.equal(backbone[key], value) for key, value in state.items())
    with pytest.raises(RDDError, match="'conv1.weight' has shape .* CSAIL"):  # a torchvision file does not fit
        build_model("deeplabv3_r18", 3, pretrained=path, variant="default")


def test_csail_mobilenet_file_is_renamed_to_torchvision_layout(tmp_path: Path) -> None:
    state = randomize(MobileNetV2Net()).state_dict()
    path = tmp_path / "mobilenetv2-imagenet.pth"
    extras = {"features.18.0.weight": torch.zeros(1280, 320, 1, 1), "classifier.1.weight": torch.zeros(1000, 1280)}
    torch.save({**state, **extras}, path)
    backbone = build_model("deeplabv3_mbv2", 3, pretrained=path, variant="official").backbone.state_dict()
    assert torch.equal(backbone["features.1.conv.1.weight"], state["features.1.conv.3.weight"])
    assert torch.equal(backbone["features.2.conv.1.0.weight"], state["features.2.conv.3.weight"])
    assert torch.equal(backbone["features.16.conv.3.running_mean"], state["features.16.conv.7.running_mean"])
    assert sum(v.numel() for v in backbone.values()) == sum(v.numel() for v in state.values())
