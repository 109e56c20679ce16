"""Helpers shared by the export tests: references computed independently of the exporter's own verifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def torch_logits(checkpoint: Path, pixels: np.ndarray) -> np.ndarray:
    """PyTorch FP32 full-resolution logits for an NxHxWx3 uint8 batch, preprocessed by the runtime's code."""
    from rdd_deploy.checkpoint import model_from_checkpoint
    from rdd_deploy.models import FullResolution
    from rdd_deploy.runtime.preprocess import normalize_batch

    model, meta = model_from_checkpoint(checkpoint)
    with torch.no_grad():
        return FullResolution(model)(torch.from_numpy(normalize_batch(pixels, meta["mean"], meta["std"]))).numpy()


def ort_outputs(path: Path, pixels: np.ndarray, fused: bool = False) -> list[np.ndarray]:
    """ONNX Runtime CPU outputs for an NxHxWx3 uint8 batch (normalised here unless the graph does it)."""
    import onnxruntime as ort

    from rdd_deploy.runtime.preprocess import normalize_batch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = pixels if fused else normalize_batch(pixels, MEAN, STD)
    return session.run(None, {"images": feed})


def agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of pixels whose argmax over classes (axis 1) agrees."""
    return float((reference.argmax(1) == candidate.argmax(1)).mean())


def resized(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Stack of images resized to `size` (H, W) with the runtime's resize."""
    from rdd_deploy.runtime.preprocess import resize_image

    return np.stack([resize_image(image, size) for image in images])
