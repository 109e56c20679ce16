"""`rdd-deploy distill configs/cityscapes/deeplabv3_r18_official.yaml` starts on a Cityscapes-layout tree with a
teacher converted from an official file and a CSAIL-layout ImageNet file, as the recipe's comments say."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from models.official_reference import OfficialSegmentor, randomize
from rdd_deploy.checkpoint import load_checkpoint
from rdd_deploy.cli import app
from rdd_deploy.distill.config import load_config
from rdd_deploy.distill.losses import CITYSCAPES_CLASS_WEIGHTS

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "cityscapes" / "deeplabv3_r18_official.yaml"
runner = CliRunner()


def test_recipe_holds_the_official_settings():
    config = load_config(RECIPE)
    assert (config.model.variant, config.model.normalization, config.model.aux_head) == ("official", "caffe", True)
    assert config.optim.weight_decay == 1e-4 and config.eval.every == 1600 and config.distill.aux_weight == 0.4
    rdd = config.distill.rdd
    assert (rdd.preset, rdd.min_kept, tuple(rdd.class_weights)) == ("official", 100000, CITYSCAPES_CLASS_WEIGHTS)


@pytest.mark.slow
def test_official_recipe_distils_from_a_converted_teacher(cityscapes_root: Path, tmp_path: Path) -> None:
    # The teacher: an official-layout file (a small ResNet-18 DeepLabV3 with its aux head), converted.
    official = randomize(OfficialSegmentor("deeplabv3_r18", 19, width=16))
    torch.save(official.state_dict(), tmp_path / "teacher.pth")
    teacher = tmp_path / "teacher.pt"
    result = runner.invoke(app, ["convert", str(tmp_path / "teacher.pth"), "--from", "cirkd", "--model",
                                 "deeplabv3_r18", "--num-classes", "19", "--dataset", "cityscapes",
                                 "--out", str(teacher)])
    assert result.exit_code == 0, result.output
    # The student's ImageNet file in the CSAIL layout: the backbone keys without `pretrained.`, plus `fc`.
    csail = {key.removeprefix("pretrained."): value for key, value in official.state_dict().items()
             if key.startswith("pretrained.")}
    csail.update({"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    torch.save(csail, tmp_path / "resnet18-imagenet.pth")

    overrides = [f"data.dataset=cityscapes:{cityscapes_root}", "data.crop_size=[32, 32]", "data.workers=0",
                 "data.val_max_images=1", "optim.iters=3", "optim.batch_size=2", "eval.every=3", 'amp="off"',
                 f"model.pretrained={tmp_path / 'resnet18-imagenet.pth'}", "distill.rdd.tfe_fraction=0.67",
                 "distill.rdd.min_kept=500", "log_every=1"]
    args = ["distill", str(RECIPE), "--teacher", str(teacher), "--device", "cpu", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args + [item for pair in zip(["--set"] * len(overrides), overrides) for item in pair])
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["train_state"]["iteration"] == 3
    assert checkpoint["model_spec"]["variant"] == "official" and checkpoint["model_spec"]["head_channels"] == 128
    meta = checkpoint["meta"]
    assert meta["channel_order"] == "BGR" and meta["align_corners"] is True and meta["class_names"][0] == "road"
    # The student started from the CSAIL file: its stem moved only by SGD steps from the file's values.
    stem = checkpoint["model"]["backbone.conv1.weight"]
    assert torch.allclose(stem, csail["conv1.weight"], atol=0.05) and not torch.equal(stem, csail["conv1.weight"])
    logged = (tmp_path / "run" / "config.yaml").read_text()
    assert yaml.safe_load(logged)["distill"]["rdd"]["preset"] == "official"
