"""Validation of a PyTorch model on whole images: mIoU, per-class IoU and pixel accuracy (and on request
Boundary IoU), on 1..N processes.

Each rank predicts every world_size-th image; the confusion matrices (and boundary counts) are summed across
ranks and scored by the runtime's metrics, so training, `rdd-deploy evaluate` and `rdd-deploy validate` share
one definition of each score. With workers, images are decoded in DataLoader workers ahead of the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from rdd_deploy.distill.distributed import DistEnv, agreed_startup, all_reduce_sum, init_distributed, shutdown
from rdd_deploy.distill.preemption import ignore_stop_signals
from rdd_deploy.errors import RDDError
from rdd_deploy.models.segmentor import ALIGN_CORNERS, upsample_logits
from rdd_deploy.runtime.metrics import SegmentationScores


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """[C, C] int64 counts (rows: target, columns: prediction) of the labelled pixels."""
    keep = target != ignore_index
    codes = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(codes, minlength=num_classes**2).reshape(num_classes, num_classes)


@torch.no_grad()
def predict_probabilities(model: nn.Module, image: torch.Tensor, scales: Sequence[float] = (1.0,),
                          flip: bool = False, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Softmax probabilities [N,C,H,W] at the image's size, averaged over scales and (optionally) a flip."""
    size = image.shape[-2:]
    align_corners = getattr(model, "align_corners", ALIGN_CORNERS)  # the official variant resizes with True
    total = None
    for scale in scales:
        scaled = image if scale == 1.0 else F.interpolate(
            image, scale_factor=scale, mode="bilinear", align_corners=align_corners)
        for flipped in ((False, True) if flip else (False,)):
            batch = scaled.flip(-1) if flipped else scaled
            with torch.autocast(image.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(batch)["out"]
            probs = upsample_logits(logits.float(), size, align_corners).softmax(dim=1)
            probs = probs.flip(-1) if flipped else probs
            total = probs if total is None else total + probs
    return total


def evaluate_model(model: nn.Module, dataset: Dataset, num_classes: int, env: DistEnv, ignore_index: int = 255,
                   scales: Sequence[float] = (1.0,), flip: bool = False, amp_dtype: torch.dtype | None = None,
                   on_image: Callable[[], None] | None = None, class_names: Sequence[str] | None = None,
                   workers: int = 0, boundary: bool = False) -> dict[str, Any]:
    """Score `model` on every image of `dataset` (split over the ranks); all ranks get the same result.

    boundary: also Boundary IoU, computed on the host (one copy of each mask), so training's validations skip it.
    """
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=env.device)
    scores = SegmentationScores(num_classes, ignore_index, class_names, boundary=boundary)
    mine = Subset(dataset, range(env.rank, len(dataset), env.world_size))
    # batch_size=None: whole images of any size, one at a time; the workers decode the next ones meanwhile.
    loader = DataLoader(mine, batch_size=None, num_workers=workers, pin_memory=env.device.type == "cuda",
                        worker_init_fn=ignore_stop_signals if workers else None)
    for image, label in loader:
        image, label = image.to(env.device, non_blocking=True), label.to(env.device, non_blocking=True)
        probs = predict_probabilities(model, image[None], scales, flip, amp_dtype)
        pred = probs.argmax(dim=1)[0]
        confusion += confusion_matrix(pred, label, num_classes, ignore_index)
        if scores.boundary is not None:
            scores.boundary.update(pred.cpu().numpy(), label.cpu().numpy())
        if on_image is not None:
            on_image()
    model.train(was_training)
    all_reduce_sum(confusion, env)
    scores.pixels.confusion = confusion.cpu().numpy()
    if scores.boundary is not None:
        counts = torch.from_numpy(scores.boundary.counts).to(env.device)
        all_reduce_sum(counts, env)
        scores.boundary.counts = counts.cpu().numpy()
    return {**scores.summary(), "images": len(dataset), "scales": list(scales), "flip": flip}


def evaluate_checkpoint(checkpoint: str | Path, data: str, split: str = "val", scales: Sequence[float] = (1.0,),
                        flip: bool = False, max_images: int | None = None, device: str = "auto",
                        on_image: Callable[[], None] | None = None, workers: int = 0) -> dict[str, Any]:
    """`rdd-deploy evaluate`: score a checkpoint on a data set split (1..N processes, each scoring a share of
    the images); the result carries the settings used."""
    from rdd_deploy.checkpoint import meta_normalization, model_from_checkpoint
    from rdd_deploy.data import build_dataset

    env = init_distributed(device)
    try:
        with agreed_startup(env):  # a file missing on one node fails every rank, not only that one
            model, meta = model_from_checkpoint(checkpoint)
            channel_order, mean, std = meta_normalization(meta)
            dataset = build_dataset(data, split, mean=mean, std=std, channel_order=channel_order,
                                    max_images=max_images)
            info, num_classes = dataset.info, model.head.classifier.out_channels
            if info.num_classes != num_classes:
                raise RDDError(f"data set {data} has {info.num_classes} classes but {checkpoint} predicts "
                               f"{num_classes}")
        result = evaluate_model(model.to(env.device), dataset, num_classes, env, info.ignore_index, scales, flip,
                                on_image=on_image, class_names=info.class_names, workers=workers, boundary=True)
    finally:
        shutdown(env)
    return {"model": str(checkpoint), "precision": "fp32 (PyTorch)", "data": data, "split": split,
            "torch_miou": meta.get("miou"), **result}
