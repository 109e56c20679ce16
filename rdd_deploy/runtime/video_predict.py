"""predict on a video, camera or stream: an overlay video, optionally lossless masks, and a JSONL line per frame.

Outputs, for a source whose stem is S: S_overlay.mp4 (H.264, the source's size and frame rate, each frame at
its source timestamp), S_masks.mkv (FFV1, lossless 8-bit gray: pixel value = class index) and S.jsonl. All
three are written under hidden temporary names and moved into place by close(), which an interrupted or
failed run calls too: what was processed is kept, complete and playable, and no file is left half-written.
"""

from __future__ import annotations

import io
import json
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rdd_deploy.atomic import atomic_path
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.masks import overlay_image, palette_of
from rdd_deploy.runtime.pipeline import StreamFrame
from rdd_deploy.runtime.video import VideoWriter

if TYPE_CHECKING:
    from rdd_deploy.runtime.segmenter import Segmenter

UNKNOWN_RATE = Fraction(25)  # what FFmpeg itself assumes for a stream that states no frame rate


class StreamStats:
    """Frames done, dropped, throughput and end-to-end latency (decoded -> written) of a running source."""

    def __init__(self) -> None:
        self.started, self.frames, self.dropped = time.perf_counter(), 0, 0
        self.latencies_ms: list[float] = []

    def add(self, latency_ms: float, dropped: int) -> None:
        """Count one written frame and the source's drop count so far."""
        self.frames += 1
        self.dropped = dropped
        self.latencies_ms.append(latency_ms)

    @property
    def seconds(self) -> float:
        """Wall time since the run started."""
        return time.perf_counter() - self.started

    @property
    def fps(self) -> float:
        """Frames written per second of wall time."""
        return self.frames / self.seconds if self.frames else 0.0

    def percentile(self, q: float) -> float | None:
        """The q-th percentile of the per-frame latency in ms (None before the first frame)."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def line(self) -> str:
        """One status line: frames, FPS, latency p50/p99, dropped."""
        p50, p99 = self.percentile(50), self.percentile(99)
        latency = f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms" if p50 is not None else "latency -"
        return f"{self.frames} frames, {self.fps:.1f} FPS, {latency}, {self.dropped} dropped"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"frames": self.frames, "dropped": self.dropped, "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 3), "latency_p50_ms": self.percentile(50),
                "latency_p99_ms": self.percentile(99)}


def class_shares(mask: np.ndarray, num_classes: int) -> list[float]:
    """The fraction of the mask's pixels in each class, in class order."""
    counts = np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
    return [round(float(c) / mask.size, 6) for c in counts]


class VideoPrediction:
    """One source segmented into out_dir; opening checks the source before any output exists."""

    def __init__(self, segmenter: Segmenter, source: str, out_dir: str | os.PathLike, masks: bool = False,
                 keep_all_frames: bool | None = None, reconnect: int = 0) -> None:
        info = segmenter.info
        if masks and info.num_classes > 256:
            raise RDDError(f"--masks writes 8-bit gray frames (at most 256 classes); the model has {info.num_classes}")
        self.stream = segmenter.stream(source, keep_all_frames, reconnect)
        self.source, self.stats = self.stream.source, StreamStats()
        self.names = list(info.class_names) if info.class_names else [str(i) for i in range(info.num_classes)]
        self.palette, out = palette_of(info), Path(out_dir)
        fps, size = self.stream.fps or UNKNOWN_RATE, self.stream.size
        self.writers: list[VideoWriter] = []
        try:
            self.writers.append(VideoWriter(out / f"{self.source.stem}_overlay.mp4", fps, size))
            if masks:
                self.writers.append(VideoWriter(out / f"{self.source.stem}_masks.mkv", fps, size, codec="ffv1",
                                                gray=True))
        except RDDError:
            for writer in self.writers:
                writer.discard()
            self.stream.close()
            raise
        self._jsonl_path = out / f"{self.source.stem}.jsonl"
        self._jsonl_atomic = atomic_path(self._jsonl_path)
        self._jsonl: io.TextIOBase = open(self._jsonl_atomic.__enter__(), "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._closed = False

    def write(self, frame: StreamFrame) -> None:
        """Overlay, encode and log one frame; its latency runs from decoding to the last output written."""
        self.writers[0].write(np.asarray(overlay_image(frame.image, frame.mask, self.palette)), frame.timestamp)
        if len(self.writers) > 1:
            self.writers[1].write(frame.mask.astype(np.uint8, copy=False), frame.timestamp)
        latency_ms = (time.perf_counter() - frame.captured) * 1000.0
        shares = class_shares(frame.mask, len(self.names))
        self._jsonl.write(json.dumps({"index": frame.index, "timestamp": round(frame.timestamp, 6),
                                      "latency_ms": round(latency_ms, 3),
                                      "class_share": dict(zip(self.names, shares))}) + "\n")
        self.stats.add(latency_ms, self.stream.dropped)

    def run(self, on_frame: Any = None) -> None:
        """Write every frame the stream yields until it ends or stop() is called; `on_frame(stats)` after each."""
        for frame in self.stream:
            self.write(frame)
            if on_frame is not None:
                on_frame(self.stats)
        self.stats.dropped = self.stream.dropped

    def stop(self) -> None:
        """End the run after the frame being written (safe from a signal handler)."""
        self.stream.stop()

    def close(self) -> list[Path]:
        """Stop the stream, finish every output and move it into place; returns the files written."""
        if self._closed:
            return []
        self._closed = True
        self.stream.close()
        self.stats.dropped = self.stream.dropped
        self._jsonl.close()
        if self.stats.frames == 0:  # nothing processed: leave no empty video behind
            for writer in self.writers:
                writer.discard()
            self._jsonl_atomic.__exit__(RDDError, None, None)
            return []
        written = [writer.close() for writer in self.writers]
        self._jsonl_atomic.__exit__(None, None, None)
        return [*written, self._jsonl_path]
