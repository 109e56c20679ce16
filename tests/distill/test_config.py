"""Recipes: every shipped YAML validates, overrides apply, and bad configs name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdd_deploy.distill.config import METHODS, apply_overrides, config_from_dict, load_config, recipe_changes
from rdd_deploy.errors import RDDError

from .conftest import tiny_config

RECIPES = sorted(Path(__file__).resolve().parents[2].joinpath("configs").rglob("*.yaml"))


def test_every_paper_table_has_a_recipe() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    for data_set in ("cityscapes", "camvid", "voc", "ade20k"):
        assert {f"{data_set}/deeplabv3_r101_teacher", f"{data_set}/deeplabv3_r18_rdd",
                f"{data_set}/pspnet_r18_rdd"} <= names
    assert {"cityscapes/deeplabv3_mbv2_rdd", "cityscapes/deeplabv3_r18_scratch_rdd"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_validates(recipe: Path) -> None:
    config = load_config(recipe)
    assert config.optim.iters >= 1 and config.optim.batch_size >= 1
    if config.distill.method != "ce":
        assert config.teacher is not None


def test_paper_recipe_values() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs/cityscapes/deeplabv3_r18_rdd.yaml")
    assert (config.optim.iters, config.optim.batch_size, config.optim.lr, config.optim.power) == (40000, 16, 0.02, 0.9)
    assert config.data.crop_size == (512, 1024) and config.data.scale_range == (0.5, 2.0)
    assert (config.distill.rdd.tfe_fraction, config.distill.rdd.threshold, config.distill.rdd.mode) == (0.1, 0.7, "xor")


def test_overrides_parse_yaml_values(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata: {dataset: synthetic}\nmodel: {name: deeplabv3_r18}\n")
    config = load_config(path, ["optim.lr=0.5", "data.crop_size=[64, 64]", "distill.rdd.mode=or",
                                 "teacher.checkpoint=t.pt"])
    assert config.optim.lr == 0.5 and config.data.crop_size == (64, 64) and config.distill.rdd.mode == "or"
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_all_methods_accepted(teacher_checkpoint: Path) -> None:
    for method in METHODS:
        config = config_from_dict(tiny_config(distill={"method": method}, teacher={"checkpoint": str(teacher_checkpoint)}))
        assert config.distill.method == method


@pytest.mark.parametrize("overrides, message", [
    (["optim.lr=-1"], "optim.lr"),
    (["optim.learning_rate=0.1"], "optim.learning_rate"),
    (["distill.method=magic"], "distill.method"),
    (["distill.method=rdd"], "needs teacher.checkpoint"),
    (["optim.lr"], "section.key=value"),
])
def test_bad_config_names_file_and_field(tmp_path: Path, overrides: list[str], message: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("name: x\ndata: {dataset: synthetic}\nmodel: {name: deeplabv3_r18}\n")
    with pytest.raises(RDDError, match=message) as error:
        load_config(path, overrides)
    assert "\n" not in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(RDDError, match="config not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(RDDError, match=f"{broken}.*not valid YAML"):
        load_config(broken)


def test_recipe_changes_name_each_changed_field_and_ignore_fields_left_at_their_default() -> None:
    recorded = tiny_config()  # as an older run recorded it: only the fields given, no defaults written out
    assert recipe_changes(recorded, config_from_dict(recorded)) == []
    changed = config_from_dict(tiny_config(optim={"iters": 8}, data={"workers": 1}))
    assert recipe_changes(recorded, changed) == ["data.workers: 0 -> 1", "optim.iters: 4 -> 8"]
