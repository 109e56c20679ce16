"""Segmenter: uint8 RGB image in, class-index mask at the image's own size out, on any Engine.

Sizes: a model with dynamic H/W runs at the image's own size (no padding: the exported graph upsamples its
logits to whatever it was given, exactly as the PyTorch model does); a static model gets the image resized
to its input size with PIL bilinear, and its logits are resized back bilinearly (torch's align_corners=False
maths) to the image size *before* the argmax, which is what the PyTorch evaluation does and is more accurate
than resizing the mask with nearest neighbour.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.engine import Engine, open_engine
from rdd_deploy.runtime.images import as_image
from rdd_deploy.runtime.int8_targets import int8_target_note
from rdd_deploy.runtime.model_info import ModelInfo
from rdd_deploy.runtime.preprocess import class_map, normalize_batch, resize_image, resize_logits

if TYPE_CHECKING:
    from rdd_deploy.runtime.pipeline import FrameStream

ImageInput = np.ndarray | str | os.PathLike


class Int8TargetWarning(UserWarning):
    """An INT8 file runs on another device than the one it was quantised for (`export --int8-for`)."""


class Segmenter:
    """Runs an exported segmentation model with the project's one preprocessing."""

    def __init__(self, engine: Engine, info: ModelInfo, source: str = "model") -> None:
        self.engine, self.info, self.source = engine, info, source
        shape, nhwc = engine.input_shape, info.input_layout == "NHWC_uint8"
        channel_axis = 3 if nhwc else 1
        if len(shape) != 4 or shape[channel_axis] != 3:
            pretty = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
            raise RDDError(f"{source}: input '{engine.input_name}' has shape {pretty}; expected an image batch "
                           f"{'[N, H, W, 3]' if nhwc else '[N, 3, H, W]'} ({info.input_layout})")
        if nhwc != (engine.input_dtype == np.uint8):
            raise RDDError(f"{source}: metadata says input_layout '{info.input_layout}' but input "
                           f"'{engine.input_name}' is {engine.input_dtype}")
        self._spatial_axes = (1, 2) if nhwc else (2, 3)
        self.static_size: tuple[int | None, int | None] = (shape[self._spatial_axes[0]], shape[self._spatial_axes[1]])
        self._chunk = shape[0] or (engine.shape_limits[1][0] if engine.shape_limits else None)

    @classmethod
    def from_file(cls, path: str | os.PathLike, backend: str = "auto", providers: list[str] | None = None,
                  precision_hint: str = "f32") -> Segmenter:
        """Open an .onnx file (ONNX Runtime, or OpenVINO at `precision_hint`: f32, bf16 or f16) or a TensorRT plan
        with its .json sidecar and read its metadata. Warns (Int8TargetWarning) when an INT8 file tuned for another
        device runs here."""
        engine = open_engine(path, backend, providers, precision_hint)
        segmenter = cls(engine, ModelInfo.parse(engine.metadata, str(path)), str(path))
        note = int8_target_note(engine.metadata, str(path), engine.backend)
        if note is not None:
            warnings.warn(note, Int8TargetWarning, stacklevel=2)
        return segmenter

    @property
    def dynamic(self) -> bool:
        """True when H or W is dynamic, i.e. taken from the image rather than resized to a fixed size."""
        return None in self.static_size

    def network_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The (H, W) the network sees for an image of `image_size`: static dims replace the image's."""
        size = tuple(s if s is not None else i for s, i in zip(self.static_size, image_size))
        limits = self.engine.shape_limits
        if limits is not None:
            low = tuple(limits[0][a] for a in self._spatial_axes)
            high = tuple(limits[1][a] for a in self._spatial_axes)
            if not all(lo <= s <= hi for s, lo, hi in zip(size, low, high)):
                raise RDDError(f"{self.source} takes images from {low[0]}x{low[1]} to {high[0]}x{high[1]} "
                               f"pixels (its optimization profile); got {size[0]}x{size[1]}")
        return size  # type: ignore[return-value]

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Same-sized uint8 images -> the network input batch (resized if static, normalised unless NHWC_uint8)."""
        size = self.network_size(images[0].shape[:2])
        batch = np.stack([resize_image(image, size) for image in images])
        if self.info.input_layout == "NHWC_uint8":
            return batch
        return normalize_batch(batch, self.info.mean, self.info.std, self.info.channel_order)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a prepared batch in chunks the engine accepts; return float32 logits [N, C, h, w]."""
        count, chunk = len(batch), self._chunk or len(batch)
        outputs = []
        for start in range(0, count, chunk):
            part = batch[start:start + chunk]
            if len(part) < chunk and self.engine.input_shape[0] is not None:  # a fixed batch: pad the last one
                part = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
            outputs.append(self.engine.run(part)[: count - start])
        logits = (outputs[0] if len(outputs) == 1 else np.concatenate(outputs)).astype(np.float32, copy=False)
        if logits.ndim != 4 or logits.shape[1] != self.info.num_classes:
            raise RDDError(f"{self.source}: output has shape {list(logits.shape)}; expected logits "
                           f"[N, {self.info.num_classes}, H, W] ({self.info.num_classes} classes in its metadata)")
        return logits

    def logits_batch(self, images: Sequence[ImageInput]) -> list[np.ndarray]:
        """Float32 logits [C, H, W] at each image's own size; images of one size share an engine call."""
        arrays = [as_image(image, str(image) if not isinstance(image, np.ndarray) else f"image {i}")
                  for i, image in enumerate(images)]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(self.network_size(array.shape[:2]), []).append(index)
        results: list[np.ndarray] = [np.empty(0)] * len(arrays)
        for indices in groups.values():
            logits = self.run(self.prepare([arrays[i] for i in indices]))
            for row, index in enumerate(indices):
                results[index] = resize_logits(logits[row], arrays[index].shape[:2], self.info.align_corners)
        return results

    def logits(self, image: ImageInput) -> np.ndarray:
        """Float32 logits [C, H, W] at the image's own size (for parity checks)."""
        return self.logits_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageInput]) -> list[np.ndarray]:
        """HxW class-index masks (uint8 up to 256 classes, else int32), one per image at its own size."""
        return [class_map(logits) for logits in self.logits_batch(images)]

    def predict(self, image: ImageInput) -> np.ndarray:
        """HxW class-index mask of one image (HxWx3 uint8 RGB array or an image file path)."""
        return self.predict_batch([image])[0]


    def stream(self, source: str | int, keep_all_frames: bool | None = None, reconnect: int = 0) -> FrameStream:
        """Iterate over a video file, camera (index N or /dev/videoN) or rtsp/http URL: StreamFrames with mask and
        timing, decoded and segmented in background threads. Live sources drop stale frames unless
        `keep_all_frames`; `reconnect` reopens a stopped stream that many times. Needs the [video] extra."""
        from rdd_deploy.runtime.pipeline import FrameStream
        return FrameStream(self, f"/dev/video{source}" if isinstance(source, int) else str(source),
                           keep_all_frames, reconnect)
