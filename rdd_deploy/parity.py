"""The PyTorch side of parity and benchmarks: a checkpoint behind the runtime's Engine interface.

Kept out of `rdd_deploy.runtime` because it imports torch. The reference runs through the very same
Segmenter (resize, normalisation, logits resize) as the exported model, so only the network differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdd_deploy.checkpoint import meta_normalization, model_from_checkpoint
from rdd_deploy.errors import RDDError
from rdd_deploy.models import upsample_logits
from rdd_deploy.runtime.engine import host_description
from rdd_deploy.runtime.model_info import ModelInfo
from rdd_deploy.runtime.segmenter import Segmenter

class TorchEngine:
    """A Segmentor in eval mode as an Engine: NCHW float32 in, full-resolution main-head logits out."""

    backend = "torch"
    input_name = "images"
    input_dtype = np.dtype(np.float32)
    shape_limits = None

    def __init__(self, model: torch.nn.Module, input_shape: tuple[int | None, ...] = (None, 3, None, None),
                 device: str | None = None) -> None:
        self.device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.eval().to(self.device_type)
        self.input_shape = input_shape
        self.provider = self.device_type
        self.device = (torch.cuda.get_device_name(0) if self.device_type == "cuda" else host_description())
        self.metadata: dict[str, Any] = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Forward under inference_mode, upsample the logits to the input size, return them on the host."""
        cudnn = torch.backends.cudnn
        # cuDNN convolutions default to TF32 on Ampere and later: a reference must compute in true FP32.
        with torch.inference_mode(), cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                                                 deterministic=cudnn.deterministic, allow_tf32=False):
            images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device_type)
            logits = upsample_logits(self.model(images)["out"], images.shape[-2:], self.model.align_corners)
            return logits.float().cpu().numpy()


def torch_segmenter(checkpoint: str | os.PathLike, like: Segmenter | None = None,
                    device: str | None = None) -> Segmenter:
    """A Segmenter running a checkpoint in PyTorch; `like` copies an exported model's static input size."""
    model, meta = model_from_checkpoint(checkpoint)
    class_names = tuple(meta.get("class_names") or ())
    if not class_names:
        raise RDDError(f"checkpoint {checkpoint} has no class_names in its meta")
    static = like.static_size if like is not None else (None, None)
    size = None if None in static else static
    channel_order, mean, std = meta_normalization(meta)
    info = ModelInfo(model_name=str(meta.get("model_name", Path(checkpoint).stem)), num_classes=len(class_names),
                     class_names=class_names, mean=mean, std=std, channel_order=channel_order,
                     align_corners=model.align_corners,
                     input_size=size, dynamic=size is None, precision="fp32",
                     ignore_index=int(meta.get("ignore_index", 255)), torch_miou=meta.get("miou"))
    return Segmenter(TorchEngine(model, (None, 3, *static), device), info, str(checkpoint))
