"""Checkpoints for the export tests: small random models with realistic logits, and one trained a little."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from .helpers import MEAN, STD

CLASS_NAMES = ["sky", "road", "car"]
SMALL = {"num_classes": 3, "aux_head": False, "head_channels": 32, "width_mult": 0.25}


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """PyTorch's OpenMP pool stalls when another process holds one core of a 2-core machine; one thread is
    faster here, and these tests check numbers, not speed."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BatchNorm statistics make every pixel's logits nearly equal: randomise the affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data = torch.rand(module.num_features, generator=generator) + 0.5
            module.bias.data = torch.randn(module.num_features, generator=generator) * 0.1
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, generator=generator)
    return model.eval()


def save(path: Path, spec: dict, model: nn.Module, **meta: object) -> Path:
    """A checkpoint in the rdd-deploy format with the meta keys the exporter reads."""
    from rdd_deploy.checkpoint import save_checkpoint

    full_meta = {"class_names": CLASS_NAMES, "mean": MEAN, "std": STD, "ignore_index": 255, "miou": 0.5, **meta}
    return save_checkpoint(path, {"model_spec": spec, "model": model.state_dict(), "meta": full_meta})


@pytest.fixture(scope="package")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """(name, aux_head) -> a cached checkpoint of a small random model (3 classes, 32 head channels); with the aux
    head it is saved as a distillation run saves its student: with a palette."""
    from rdd_deploy.models import build_model

    folder, cache = tmp_path_factory.mktemp("checkpoints"), {}

    def make(name: str, aux_head: bool = False) -> Path:
        if (name, aux_head) not in cache:
            spec = {"name": name, **SMALL, "aux_head": aux_head}
            extra = {"palette": [[0, 0, 0], [128, 64, 128], [0, 0, 142]]} if aux_head else {}
            torch.manual_seed(0)
            cache[name, aux_head] = save(folder / f"{name}{'_aux' if aux_head else ''}.pt", spec,
                                         perturb(build_model(**spec)), crop_size=[64, 64], **extra)
        return cache[name, aux_head]

    return make


def shapes(count: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey textured backgrounds with red discs (class 1) and blue squares (class 2): learnable in seconds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.zeros((count, size, size), np.int64)
    for i in range(count):
        tilt = (xx / size)[..., None] * rng.uniform(-40, 40, 3) + (yy / size)[..., None] * rng.uniform(-40, 40, 3)
        image = rng.uniform(80, 180) + rng.uniform(-15, 15, 3) + tilt + rng.normal(0, 8, (size, size, 3))
        for _ in range(rng.integers(1, 3)):
            cls, cy, cx, r = int(rng.integers(1, 3)), *rng.uniform(0, size, 2), rng.uniform(14, 28)
            inside = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if cls == 1 else ((abs(yy - cy) < r) & (abs(xx - cx) < r))
            image[inside] = (220, 50, 40) if cls == 1 else (40, 60, 220)
            image[inside] += rng.normal(0, 15, 3)
            labels[i][inside] = cls
        images[i] = np.clip(image, 0, 255)
    return images, labels


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """DeepLabV3-ResNet18 after 20 SGD steps of cross-entropy on `shapes`, with calibration and held-out images.

    A random network's argmax flips under any rounding, so reduced-precision tolerances only mean something
    on a model that has learnt confident decisions. (MobileNetV2 at width 0.25 learns too slowly for a test.)
    """
    from rdd_deploy.models import FullResolution, build_model
    from rdd_deploy.runtime.preprocess import normalize_batch

    images, labels = shapes(64)
    inputs, targets = torch.from_numpy(normalize_batch(images, MEAN, STD)), torch.from_numpy(labels)
    spec = {"name": "deeplabv3_r18", **SMALL}
    torch.manual_seed(0)
    model = build_model(**spec)
    net = FullResolution(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        batch = torch.randint(0, len(images), (8,), generator=generator)
        loss = F.cross_entropy(net(inputs[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # 20 steps leave the running BatchNorm statistics far from the weights' (eval accuracy 55 % instead of 89 %):
    # re-estimate them with one pass over half the images, as a longer schedule would have converged to.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    with torch.no_grad():
        net(inputs[:32])
    folder = tmp_path_factory.mktemp("trained")
    checkpoint = save(folder / "r18.pt", spec, model.eval(), class_names=["background", "disc", "square"],
                      crop_size=[64, 64])
    return {"checkpoint": checkpoint, "calibration": list(images[:16]), "held_out": list(shapes(8, seed=1)[0])}


@pytest.fixture(scope="package")
def photos() -> list[np.ndarray]:
    """scikit-image's sample photos (the exporter's own verification set)."""
    from rdd_deploy.export.images import sample_photos

    return sample_photos()
