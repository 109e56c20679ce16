"""Decode, pre-process + infer, and the caller's own work (overlay + encode) run concurrently on bounded queues.

The engines (ONNX Runtime, OpenVINO, TensorRT) release the GIL while they run, so the three threads overlap:
the engine does not wait for the decoder, and the next frame is decoded while the caller encodes the last one.
A file keeps every frame in order (the decoder waits when the queue is full); a live source (camera, stream)
keeps only the newest frame waiting, dropping and counting the stale ones, so the masks follow the scene
rather than fall further behind it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from rdd_deploy.runtime.video import Source, VideoFrame, VideoReader, parse_source, reconnecting_frames

if TYPE_CHECKING:
    from rdd_deploy.runtime.segmenter import Segmenter

QUEUE_SIZE = 4  # frames waiting between two stages when every frame is kept
_END = object()
_POLL_S = 0.05  # how often a waiting stage looks whether the stream was stopped


def _is_marker(item: Any) -> bool:
    return item is _END or isinstance(item, BaseException)


@dataclass(frozen=True)
class StreamFrame:
    """A frame with its mask: index and timestamp in the source, and perf_counter times of decode and mask."""

    index: int
    timestamp: float
    image: np.ndarray
    mask: np.ndarray
    captured: float
    segmented: float

    @property
    def latency_ms(self) -> float:
        """Milliseconds from the end of decoding to the mask being ready."""
        return (self.segmented - self.captured) * 1000.0


class FrameQueue:
    """A bounded FIFO between two threads; with `drop_stale`, a new frame replaces those still waiting (counted
    in `dropped`) instead of waiting for room. Waits give up when `stop` is set."""

    def __init__(self, stop: threading.Event, drop_stale: bool, size: int = QUEUE_SIZE) -> None:
        self.stop, self.drop_stale, self.size = stop, drop_stale, size
        self.dropped = 0
        self._items: collections.deque = collections.deque()
        self._ready = threading.Condition()

    def put(self, item: Any, marker: bool = False) -> bool:
        """Queue `item`; a marker (end of stream, an error) is never dropped nor made to wait. False when the
        stream was stopped while waiting for room."""
        with self._ready:
            if not marker and self.drop_stale:
                while self._items and not _is_marker(self._items[-1]):
                    self._items.pop()
                    self.dropped += 1
            elif not marker:
                while len(self._items) >= self.size:
                    if self.stop.is_set():
                        return False
                    self._ready.wait(_POLL_S)
            self._items.append(item)
            self._ready.notify_all()
            return True

    def get(self) -> Any:
        """The oldest item, waiting for one; _END once the stream was stopped."""
        with self._ready:
            while not self._items:
                if self.stop.is_set():
                    return _END
                self._ready.wait(_POLL_S)
            item = self._items.popleft()
            self._ready.notify_all()
            return item


class FrameStream:
    """Iterate to get StreamFrames in order; `dropped` counts the stale frames of a live source skipped so far.

    Opening checks the source at once (a missing file or camera raises here, not on the first frame). stop()
    may be called from a signal handler: iteration then ends after the frame being handed out.
    """

    def __init__(self, segmenter: Segmenter, source: str | Source, keep_all_frames: bool | None = None,
                 reconnect: int = 0) -> None:
        self.source = parse_source(source) if isinstance(source, str) else source
        self.segmenter, self.reconnect = segmenter, reconnect
        self._reader = VideoReader(self.source)
        self.fps: Fraction | None = self._reader.fps
        self.size = self._reader.size
        drop = self.source.live and not keep_all_frames
        self._stop = threading.Event()
        self._decoded = FrameQueue(self._stop, drop_stale=drop)
        self._segmented = FrameQueue(self._stop, drop_stale=False)
        self._threads = [threading.Thread(target=self._decode, name="decode", daemon=True),
                         threading.Thread(target=self._infer, name="infer", daemon=True)]
        self._started = False

    @property
    def dropped(self) -> int:
        """Frames decoded but skipped because a newer one arrived before the engine was free."""
        return self._decoded.dropped

    def stop(self) -> None:
        """Ask every stage to finish; safe from a signal handler."""
        self._stop.set()

    def _decode(self) -> None:
        try:
            for frame in reconnecting_frames(self._reader, self.reconnect, self._stop.is_set):
                if self._stop.is_set() or not self._decoded.put(frame):
                    break
            self._decoded.put(_END, marker=True)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            self._decoded.put(exc, marker=True)

    def _infer(self) -> None:
        while True:
            item = self._decoded.get()
            if not isinstance(item, VideoFrame):
                self._segmented.put(item, marker=True)
                return
            try:
                mask = self.segmenter.predict(item.image)
            except BaseException as exc:
                self._segmented.put(exc, marker=True)
                return
            result = StreamFrame(item.index, item.timestamp, item.image, mask, item.captured, time.perf_counter())
            if not self._segmented.put(result):
                return

    def __iter__(self) -> Iterator[StreamFrame]:
        if self._started:
            raise RuntimeError("a FrameStream is iterated once")
        self._started = True
        for thread in self._threads:
            thread.start()
        try:
            while not self._stop.is_set():
                item = self._segmented.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the stages and wait for them (a network read may take until its timeout; the threads are daemons)."""
        self._stop.set()
        if not self._started:
            self._reader.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=1.0)

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sequential_frames(segmenter: Segmenter, source: str | Source) -> Iterator[StreamFrame]:
    """The same frames as FrameStream, decoded and segmented one after the other in the caller's thread."""
    reader = VideoReader(parse_source(source) if isinstance(source, str) else source)
    for frame in reconnecting_frames(reader, 0, lambda: False):
        mask = segmenter.predict(frame.image)
        yield StreamFrame(frame.index, frame.timestamp, frame.image, mask, frame.captured, time.perf_counter())
