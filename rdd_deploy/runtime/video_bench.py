"""bench --source: frames per second of the engine alone, a sequential pipeline and the concurrent one, per model.

All three run on the same decoded frames in one process, interleaved round by round (engine, sequential,
concurrent for each model in turn), so that a background load or a drifting CPU clock hits them alike and
their ratios stay fair. The pipelines do the work predict does: decode, segment, overlay, encode (H.264).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.masks import overlay_image, palette_of
from rdd_deploy.runtime.pipeline import FrameStream, StreamFrame, sequential_frames
from rdd_deploy.runtime.segmenter import Segmenter
from rdd_deploy.runtime.video import VideoReader, VideoWriter, parse_source
from rdd_deploy.runtime.video_predict import UNKNOWN_RATE

MODES = ("engine", "sequential", "concurrent")


def decoded_frames(source: str) -> tuple[list[np.ndarray], Any, tuple[int, int]]:
    """Every frame of a video file as RGB arrays, with its frame rate and size."""
    spec = parse_source(source)
    if spec.live:
        raise RDDError(f"bench --source takes a video file (the same frames for every run), not {source}")
    reader = VideoReader(spec)
    try:
        images = [frame.image for frame in reader.frames(0.0)]
    finally:
        reader.close()
    return images, reader.fps or UNKNOWN_RATE, reader.size


def _encode_all(frames: Iterable[StreamFrame], segmenter: Segmenter, path: Path, fps: Any,
                size: tuple[int, int]) -> int:
    """Overlay and encode every frame into `path`, as predict does; returns the frame count."""
    writer, palette = VideoWriter(path, fps, size), palette_of(segmenter.info)
    for frame in frames:
        writer.write(np.asarray(overlay_image(frame.image, frame.mask, palette)), frame.timestamp)
    writer.close()
    return writer.count


def _timed(run: Callable[[], int]) -> float:
    """Frames per second of `run`, which returns how many frames it processed."""
    start = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - start)


def bench_video(segmenters: Sequence[Segmenter], source: str, rounds: int = 3) -> list[dict[str, Any]]:
    """Per model: median FPS of engine-only, sequential and concurrent over `rounds` interleaved passes of the
    video (after one untimed warm-up pass of each), and the concurrent pipeline's ratios to the other two."""
    images, fps, size = decoded_frames(source)
    prepared = [[segmenter.prepare([image]) for image in images] for segmenter in segmenters]
    results: list[dict[str, list[float]]] = [{mode: [] for mode in MODES} for _ in segmenters]
    with tempfile.TemporaryDirectory(prefix="rdd-bench-video-") as tmp:
        out = Path(tmp) / "overlay.mp4"
        for round_index in range(rounds + 1):
            for segmenter, batches, times in zip(segmenters, prepared, results):
                runs = {"engine": lambda s=segmenter, b=batches: sum(len(s.run(x)) for x in b),
                        "sequential": lambda s=segmenter: _encode_all(sequential_frames(s, source), s, out, fps, size),
                        "concurrent": lambda s=segmenter: _encode_all(FrameStream(s, source), s, out, fps, size)}
                for mode, run in runs.items():
                    value = _timed(run)
                    if round_index:  # round 0 warms up caches, thread pools and the encoder
                        times[mode].append(value)
    rows = []
    for segmenter, times in zip(segmenters, results):
        medians = {mode: float(np.median(values)) for mode, values in times.items()}
        rows.append({"model": segmenter.source, "frames": len(images), "size": list(size), "rounds": rounds,
                     **{f"{mode}_fps": value for mode, value in medians.items()},
                     "concurrent_vs_sequential": medians["concurrent"] / medians["sequential"],
                     "concurrent_vs_engine": medians["concurrent"] / medians["engine"]})
    return rows
