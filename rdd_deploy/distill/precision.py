"""Mixed precision on CUDA: the student's autocast dtype by GPU generation, and the frozen teacher's dtype."""

from __future__ import annotations

import torch

from rdd_deploy.checkpoint import Normalization, meta_normalization, model_from_checkpoint
from rdd_deploy.distill.config import TrainConfig
from rdd_deploy.errors import RDDError
from rdd_deploy.models import Segmentor


def amp_dtype(setting: str, device: torch.device, capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype; auto: bf16 on sm80+ GPUs, fp16 (with GradScaler) on older ones, none (fp32) on CPU.

    Pre-Ampere GPUs (T4, V100: sm75, sm70) have no bf16 tensor cores and emulate it slowly. `capability`
    defaults to the device's own.
    """
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "auto":
        major, _ = capability if capability is not None else torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    return torch.float16 if setting == "fp16" else torch.bfloat16


def load_teacher(config: TrainConfig, num_classes: int, device: torch.device) -> tuple[Segmentor, Normalization]:
    """The frozen teacher (eval mode, no gradients, fp16 on CUDA with teacher.half) and its input convention.

    fp16 and not bf16: a frozen network's activations stay in a known range, and fp16's 10-bit mantissa
    keeps three more bits than bf16 through every layer, BatchNorm included.
    """
    teacher, meta = model_from_checkpoint(config.teacher.checkpoint)
    teacher_classes = teacher.head.classifier.out_channels
    if teacher_classes != num_classes:
        raise RDDError(f"teacher {config.teacher.checkpoint} predicts {teacher_classes} classes, "
                       f"the data set has {num_classes}")
    needs_aux = config.distill.method.endswith("rdd") and config.distill.rdd.tfe_fraction > 0
    if needs_aux and teacher.aux_head is None:
        raise RDDError(f"TFE-RDD needs a teacher with an auxiliary head; {config.teacher.checkpoint} has none "
                       "(train it with model.aux_head: true, or set distill.rdd.tfe_fraction: 0)")
    teacher.requires_grad_(False)
    teacher = teacher.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    if device.type == "cuda" and config.teacher.half:
        teacher = teacher.to(torch.float16)
    return teacher, meta_normalization(meta)


@torch.no_grad()
def teacher_forward(teacher: Segmentor, images: torch.Tensor, amp: torch.dtype | None,
                    features: bool = False) -> dict[str, torch.Tensor]:
    """The teacher's outputs: in its own dtype when halved, else under the student's autocast (never plain fp32
    on a GPU when amp is on: the teacher is over half of a step's FLOPs)."""
    dtype = next(teacher.parameters()).dtype
    halved = dtype != torch.float32
    with torch.autocast(images.device.type, dtype=amp or torch.float32, enabled=amp is not None and not halved):
        return teacher(images.to(dtype), features)
