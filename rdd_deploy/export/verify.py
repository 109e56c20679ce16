"""Every export checks itself against a reference on the same real photos and the same preprocessing: each ONNX
file against PyTorch, each TensorRT engine against ONNX Runtime running the ONNX file it was built from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typing import Any

import numpy as np
from rich.table import Table

from rdd_deploy.errors import RDDError
from rdd_deploy.export.formats import console
from rdd_deploy.runtime.parity import TOLERANCES
from rdd_deploy.runtime.preprocess import normalize_batch, resize_image

# Share of pixels whose argmax must agree with the reference: the runtime's parity tolerances, as fractions.
MIN_AGREEMENT = {precision: agreement / 100.0 for precision, (agreement, _) in TOLERANCES.items()}


@dataclass(frozen=True)
class Agreement:
    """How an exported model's output compares with the reference's on one input shape."""

    shape: tuple[int, ...]
    images: int
    agreement: float
    max_abs: float
    mean_abs: float
    nonfinite: int = 0  # NaN or infinite logits: FP16 overflow, typically


def check_shapes(input_size: tuple[int, int], batch: int, dynamic: bool) -> list[tuple[int, int, int]]:
    """(N, H, W) shapes to verify: the export shape, plus another batch and size for a dynamic model."""
    shapes = [(batch, *input_size)]
    if dynamic:
        # Another batch and an H/W that is not a multiple of 8 prove that nothing was frozen at export time.
        shapes.append((batch + 1, max(32, input_size[0] // 2 + 4), max(32, input_size[1] // 2 + 4)))
    return shapes


Runner = Callable[[np.ndarray], list[np.ndarray]]  # one input batch -> the model's outputs (logits[, mask])
Reference = Callable[[np.ndarray], np.ndarray]  # NxHxWx3 uint8 pixels -> the reference's logits


def torch_reference(model: Any, mean: tuple[float, ...], std: tuple[float, ...],
                    channel_order: str = "RGB") -> Reference:
    """PyTorch FP32 logits of a full-resolution model for raw pixels, normalised by the runtime's code."""
    import torch

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(normalize_batch(pixels, mean, std, channel_order))).numpy()

    return run


def onnx_reference(path: Path, fused: bool, mean: tuple[float, ...], std: tuple[float, ...],
                   channel_order: str = "RGB") -> Reference:
    """ONNX Runtime CPU logits of an exported ONNX file for raw pixels, fed as that file takes them."""
    run = onnx_runner(path)
    return lambda pixels: run(pixels if fused else normalize_batch(pixels, mean, std, channel_order))[0]


def onnx_runner(path: Path, float_qdq: bool = False) -> Runner:
    """Run an ONNX file with ONNX Runtime on the CPU; `float_qdq`: a QDQ graph as written (DequantizeLinear ->
    float op -> QuantizeLinear), without the integer kernels that give this CPU's, not the device's, results."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # FP16 graphs make ORT warn about the casts it inserts on CPU
    if float_qdq:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda feed: session.run(None, {name: feed})


class Verifier:
    """Holds the reference and the photos; checks an exported model against the reference at each shape."""

    def __init__(self, reference: Reference, photos: list[np.ndarray], mean: tuple[float, ...],
                 std: tuple[float, ...], fused: bool, shapes: list[tuple[int, int, int]],
                 channel_order: str = "RGB", reference_name: str = "PyTorch FP32") -> None:
        self.reference, self.photos, self.mean, self.std, self.fused = reference, photos, mean, std, fused
        self.shapes, self.channel_order, self.reference_name = shapes, channel_order, reference_name
        self._cache: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _batches(self, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Photos resized to H x W (cycled to fill whole batches of N) and the reference's logits for them."""
        if shape not in self._cache:
            n, h, w = shape
            count = n * -(-len(self.photos) // n)
            pixels = np.stack([resize_image(self.photos[i % len(self.photos)], (h, w)) for i in range(count)])
            logits = np.concatenate([self.reference(pixels[i:i + n]) for i in range(0, count, n)]).astype(np.float32)
            self._cache[shape] = (pixels, logits)
        return self._cache[shape]

    def _normalize(self, pixels: np.ndarray) -> np.ndarray:
        return normalize_batch(pixels, self.mean, self.std, self.channel_order)

    def compare(self, run: Runner, shapes: list[tuple[int, int, int]] | None = None) -> list[Agreement]:
        """Run an exported model on every check shape and measure it against the reference."""
        results = []
        for shape in shapes or self.shapes:
            pixels, reference = self._batches(shape)
            n = shape[0]
            outputs = []
            for i in range(0, len(pixels), n):
                feed = pixels[i:i + n] if self.fused else self._normalize(pixels[i:i + n])
                outputs.append(run(feed))
            logits = np.concatenate([out[0] for out in outputs]).astype(np.float32)
            # With an in-graph argmax the mask is what users consume, so that is what must agree.
            labels = np.concatenate([out[1] for out in outputs]) if len(outputs[0]) > 1 else logits.argmax(1)
            error = np.abs(logits - reference)
            results.append(Agreement(shape, len(pixels), float((labels == reference.argmax(1)).mean()),
                                     float(error.max()), float(error.mean()),
                                     int(np.count_nonzero(~np.isfinite(logits)))))
        return results

    def check(self, run: Runner, precision: str, label: str, backend: str = "ONNX Runtime CPU",
              shapes: list[tuple[int, int, int]] | None = None) -> list[Agreement]:
        """Compare, print a table, and raise RDDError when agreement is below the precision's minimum."""
        results = self.compare(run, shapes)
        print_agreement(label, precision, backend, results, self.reference_name)
        required = MIN_AGREEMENT[precision]
        for result in results:
            n, h, w = result.shape
            if result.nonfinite:
                raise RDDError(f"{label}: {result.nonfinite} logits are NaN or infinite at {n}x{h}x{w} (activations "
                               f"beyond the {precision} range); file not written: export fp32 or int8 instead")
            if result.agreement < required:
                raise RDDError(f"{label}: argmax agrees with {self.reference_name} on {result.agreement:.3%} of pixels at "
                               f"{n}x{h}x{w}, below the {required:.1%} required for {precision}; file not written")
        return results


def print_agreement(label: str, precision: str, backend: str, results: list[Agreement],
                    reference_name: str = "PyTorch FP32") -> None:
    """One rich table: shape, images, argmax agreement, max and mean absolute logit error, pass/fail."""
    table = Table(title=f"{label} ({backend}) vs {reference_name} on real images", title_justify="left")
    for column in ("N x H x W", "images", "argmax agreement", "max |Δlogit|", "mean |Δlogit|", ""):
        table.add_column(column, justify="right")
    for r in results:
        ok = r.agreement >= MIN_AGREEMENT[precision]
        table.add_row("x".join(map(str, r.shape)), str(r.images), f"{r.agreement:.4%}", f"{r.max_abs:.3g}",
                      f"{r.mean_abs:.3g}", "[green]pass[/]" if ok else f"[red]< {MIN_AGREEMENT[precision]:.1%}[/]")
    console.print(table)
