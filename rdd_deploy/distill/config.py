"""Training recipes: YAML files in `configs/`, validated by pydantic, overridable from the command line.

Every field the paper's recipe depends on is explicit here, so a run directory's `config.yaml` is enough to
reproduce it (the peer tools' most common complaint is hidden loss weights and batch sizes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rdd_deploy.errors import RDDError

Method = Literal["ce", "kd", "rdd", "at", "cwd", "at+rdd", "cwd+rdd"]
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]


class Section(BaseModel):
    """A config section: unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(Section):
    """Which data set, and the paper's training augmentation."""

    dataset: str = Field(description="NAME:PATH (cityscapes, camvid, voc, ade20k; folder or coco for your own "
                                     "data) or 'synthetic'")
    crop_size: tuple[int, int] = (512, 1024)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    workers: int = Field(4, ge=0)
    val_max_images: Optional[int] = Field(None, ge=1)


class ModelConfig(Section):
    """Arguments of `build_model` for the network being trained, and the input convention it is trained with."""

    name: str
    variant: Literal["default", "official"] = "default"
    aux_head: Optional[bool] = None
    pretrained: Optional[Path] = Field(None, description="'imagenet' (torchvision's weights) or a local file")
    head_channels: Optional[int] = Field(256, ge=1, description="null: 256, or the official variant's width")
    width_mult: float = Field(1.0, gt=0)
    dropout: Optional[float] = Field(0.1, ge=0, lt=1, description="every head dropout's rate during training; "
                                     "null: the architecture's own (0.1; the official ASPP projection 0.5)")
    normalization: Literal["imagenet", "caffe"] = Field(
        "imagenet", description="imagenet: RGB, ImageNet mean/std; caffe: BGR minus the Caffe mean, as the "
                                "official code and its ImageNet files")

    @model_validator(mode="after")
    def _official_widths_and_dropouts(self) -> ModelConfig:
        # The official variant keeps its own head width (128/256) and dropouts (0.5/0.1) unless a recipe says otherwise.
        if self.variant == "official":
            self.head_channels = self.head_channels if "head_channels" in self.model_fields_set else None
            self.dropout = self.dropout if "dropout" in self.model_fields_set else None
        return self


class TeacherConfig(Section):
    """The frozen teacher: a checkpoint written by `rdd-deploy train-teacher`."""

    checkpoint: Path
    half: bool = Field(True, description="fp16 teacher on CUDA (it only runs forward; without it the teacher runs "
                                         "under the student's autocast); ignored on CPU")


class OptimConfig(Section):
    """SGD with poly decay, iteration based (the paper: 40k iterations, global batch 16, lr 0.02)."""

    iters: int = Field(40000, ge=1)
    batch_size: int = Field(16, ge=1, description="global batch, split evenly over the processes")
    lr: float = Field(0.02, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(5e-4, ge=0)
    power: float = Field(0.9, ge=0)


class RDDConfig(Section):
    """RDD's options (DESIGN.md section 2); `preset: official` reproduces the official code."""

    preset: Literal["paper", "official"] = "paper"
    tfe_fraction: float = Field(0.1, ge=0, le=1)
    threshold: float = Field(0.7, gt=0, lt=1)
    mode: Literal["xor", "and", "or"] = "xor"
    min_kept: Optional[int] = Field(None, ge=0)
    class_weights: Optional[list[float]] = None
    confidence: Optional[Literal["max", "target"]] = Field(
        None, description="ours, for ablations: TSE's confidence alone (default: the preset's, max / target class)")
    tse_mean: Optional[Literal["pixels", "selected"]] = Field(
        None, description="ours, for ablations: TSE's CE averaged over all pixels or the selected ones (default: "
                          "the preset's, pixels / selected)")


class DistillConfig(Section):
    """The objective: task loss, optional RDD re-weighting of it, and the distillation terms."""

    method: Method = "rdd"
    temperature: float = Field(1.0, gt=0)
    kd_weight: float = Field(1.0, ge=0)
    aux_weight: float = Field(0.4, ge=0, description="0: no auxiliary head is built (it would get no gradient)")
    at_weight: float = Field(500.0, ge=0, description="beta/2 of attention transfer, beta = 1000")
    cwd_weight: float = Field(3.0, ge=0)
    cwd_temperature: float = Field(4.0, gt=0)
    rdd: RDDConfig = RDDConfig()


class EvalConfig(Section):
    """Validation during training (and the defaults of `rdd-deploy evaluate`)."""

    every: int = Field(4000, ge=1)
    flip: bool = False
    scales: list[float] = [1.0]


class TrainConfig(Section):
    """One training run: a teacher (method ce, no teacher) or a student distilled from a teacher."""

    name: str = "run"
    seed: int = 0
    data: DataConfig
    model: ModelConfig
    teacher: Optional[TeacherConfig] = None
    optim: OptimConfig = OptimConfig()
    distill: DistillConfig = DistillConfig()
    eval: EvalConfig = EvalConfig()
    amp: Literal["auto", "off", "bf16", "fp16"] = Field("auto", description="auto: bf16 on sm80+ GPUs, fp16 with "
                                                        "GradScaler on older ones, off on CPU")
    channels_last: bool = False
    sync_bn: bool = True
    log_every: int = Field(20, ge=1)
    save_every: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _teacher_when_distilling(self) -> TrainConfig:
        if self.distill.method != "ce" and self.teacher is None:
            raise ValueError(f"method '{self.distill.method}' needs teacher.checkpoint (or use method 'ce')")
        return self


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise RDDError(f"override '{dotted}': '{key}' is not a section")
    node[keys[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (values parsed as YAML) to a raw config tree."""
    for item in overrides:
        if "=" not in item:
            raise RDDError(f"override '{item}' must look like section.key=value (e.g. optim.lr=0.01)")
        key, text = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(text))
    return tree


def _format_errors(source: str, error: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors())
    return f"invalid config {source}: {problems}"


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe, apply overrides and validate; one clear line naming the file and field on error."""
    path = Path(path)
    if not path.is_file():
        raise RDDError(f"config not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RDDError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise RDDError(f"config {path} must be a mapping of sections, got {type(tree).__name__}")
    return config_from_dict(apply_overrides(tree, overrides or []), str(path))


def config_from_dict(tree: dict[str, Any], source: str = "(dict)") -> TrainConfig:
    """Validate a raw config tree."""
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise RDDError(_format_errors(source, exc)) from None


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain YAML/JSON-safe dict (paths as strings, tuples as lists), for run directories and checkpoints."""
    return config.model_dump(mode="json")


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a} -> {b}")
    return found


def recipe_changes(recorded: dict[str, Any], config: TrainConfig) -> list[str]:
    """'section.key: old -> new' for every field where `config` differs from a run's recorded config (validated
    again, so that an older run's config gains the fields added since with their defaults)."""
    return _differences(config_to_dict(config_from_dict(recorded)), config_to_dict(config))
