"""Tiny exported models for the runtime tests: built once per session with torch.onnx.export (TorchScript)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLASS_NAMES = ["sky", "road", "car"]


class TinyNet(nn.Module):
    """Two convolutions: logits at the input resolution, like an exported FullResolution model."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class RawPixels(nn.Module):
    """NHWC uint8 in, normalisation inside the graph (the NHWC_uint8 layout)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images.permute(0, 3, 1, 2).float() - self.mean) / self.std)


def metadata(num_classes: int = 3, size: tuple[int, int] = (64, 64), dynamic: bool = True,
             layout: str = "NCHW_float", precision: str = "fp32", **extra: object) -> dict[str, object]:
    """The export contract's metadata as native values."""
    names = CLASS_NAMES if num_classes == 3 else [f"c{i}" for i in range(num_classes)]
    return {"rdd_deploy.format": "1", "model_name": "tiny", "num_classes": num_classes, "class_names": names,
            "mean": MEAN, "std": STD, "input_layout": layout, "input_size": list(size), "dynamic": dynamic,
            "precision": precision, "torch_miou": None, "ignore_index": 255, **extra}


def export_onnx(module: nn.Module, path: Path, size: tuple[int, int] = (64, 64), dynamic: bool = True,
                layout: str = "NCHW_float", meta: dict[str, object] | None = None, num_classes: int = 3) -> Path:
    """torch.onnx.export (dynamo=False, opset 17) plus metadata_props encoded as the contract says."""
    import onnx

    module = module.eval()
    if layout == "NHWC_uint8":
        example = torch.zeros(1, *size, 3, dtype=torch.uint8)
        axes = {"images": {0: "n", 1: "h", 2: "w"}, "logits": {0: "n", 2: "h", 3: "w"}}
    else:
        example = torch.zeros(1, 3, *size)
        axes = {"images": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17, input_names=["images"],
                          output_names=["logits"], dynamic_axes=axes if dynamic else None)
    module.eval()  # the exporter restores the wrapper's training flag recursively
    model = onnx.load(str(path))
    meta = meta if meta is not None else metadata(num_classes, size, dynamic, layout)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """PyTorch's OpenMP pool stalls when another process holds one core of a 2-core machine (1.7 s instead of
    7 ms per forward, measured); these tests check numbers, not speed, so torch gets one thread here."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(params=["onnxruntime", "openvino"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each ONNX backend in turn; OpenVINO's tests are skipped where it is not installed."""
    if request.param == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed (pip install 'rdd-deploy[openvino]')")
    return request.param


@pytest.fixture(scope="package")
def tiny_net() -> TinyNet:
    return TinyNet().eval()


@pytest.fixture(scope="package")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="package")
def dynamic_onnx(tiny_net: TinyNet, models_dir: Path) -> Path:
    return export_onnx(tiny_net, models_dir / "dynamic.onnx")


@pytest.fixture(scope="package")
def static_onnx(tiny_net: TinyNet, models_dir: Path) -> Path:
    return export_onnx(tiny_net, models_dir / "static.onnx", size=(64, 64), dynamic=False)


@pytest.fixture(scope="package")
def nhwc_onnx(tiny_net: TinyNet, models_dir: Path) -> Path:
    return export_onnx(RawPixels(tiny_net), models_dir / "nhwc.onnx", layout="NHWC_uint8")


@pytest.fixture(scope="package")
def exporter():
    """export_onnx, for tests that need an unusual model."""
    return export_onnx


@pytest.fixture(scope="package")
def make_metadata():
    """metadata(), for tests that need unusual metadata."""
    return metadata


@pytest.fixture
def photo() -> np.ndarray:
    """A real photo (scikit-image's chelsea, 300x451) cropped to 75x101 to keep the tests fast."""
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[100:175, 150:251])


class Biased(nn.Module):
    """A deliberately broken export: a constant added to one class's logits."""

    def __init__(self, net: nn.Module, cls: int, bias: float) -> None:
        super().__init__()
        self.net, self.cls, self.bias = net, cls, bias

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images)
        return torch.cat([logits[:, :self.cls], logits[:, self.cls:self.cls + 1] + self.bias,
                          logits[:, self.cls + 1:]], dim=1)


@pytest.fixture(scope="package")
def student(models_dir: Path) -> dict[str, Path]:
    """A tiny DeepLabV3-MobileNetV2 checkpoint, its faithful ONNX export and a biased one."""
    from rdd_deploy.checkpoint import save_checkpoint
    from rdd_deploy.models import FullResolution, build_model

    spec = {"name": "deeplabv3_mbv2", "num_classes": 3, "aux_head": False, "head_channels": 32, "width_mult": 0.25}
    model = build_model(**spec).eval()
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # fresh BatchNorm statistics make every pixel's logits equal: randomise
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data = torch.rand(module.num_features, generator=generator) + 0.5
            module.bias.data = torch.randn(module.num_features, generator=generator) * 0.1
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, generator=generator)
    meta = {"class_names": CLASS_NAMES, "mean": MEAN, "std": STD, "ignore_index": 255, "miou": None}
    checkpoint = save_checkpoint(models_dir / "student.pt", {"model_spec": spec, "model": model.state_dict(),
                                                             "meta": meta})
    full = FullResolution(model)
    return {"checkpoint": checkpoint, "onnx": export_onnx(full, models_dir / "student.onnx"),
            "biased": export_onnx(Biased(full, 2, 2.0), models_dir / "biased.onnx"),
            "static": export_onnx(full, models_dir / "student_static.onnx", size=(64, 96), dynamic=False)}
