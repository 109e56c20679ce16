"""Every paper recipe starts training: one iteration on a tiny tree with the data set's real layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rdd_deploy.checkpoint import load_checkpoint
from rdd_deploy.distill.config import load_config
from rdd_deploy.distill.trainer import train

from .conftest import write_teacher

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAPER_RECIPES = sorted(p for name in ("cityscapes", "camvid", "voc", "ade20k") for p in (CONFIGS / name).glob("*.yaml"))
NUM_CLASSES = {"cityscapes": 19, "camvid": 11, "voc": 21, "ade20k": 150}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_starts_training(recipe: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    name = recipe.parent.name
    root = request.getfixturevalue(f"{name}_root")
    teacher = write_teacher(tmp_path / "teacher.pt", NUM_CLASSES[name])
    # The recipe as shipped, with only sizes shrunk, the data pointed at the tiny tree and no ImageNet file.
    overrides = [f"data.dataset={name}:{root}", "data.crop_size=[32, 32]", "data.workers=0",
                 "data.val_max_images=1", "optim.iters=1", "optim.batch_size=2", "model.pretrained=null",
                 "eval.every=1", f"teacher.checkpoint={teacher}"]
    config = load_config(recipe, overrides)
    shipped = yaml.safe_load(recipe.read_text())
    assert config.model.name == shipped["model"]["name"] and config.distill.method == shipped["distill"]["method"]
    run_dir = train(config, tmp_path / "run", device="cpu", log=False)
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["train_state"]["iteration"] == 1
    assert checkpoint["model_spec"]["num_classes"] == NUM_CLASSES[name]
    assert (run_dir / "best.pt").is_file()
