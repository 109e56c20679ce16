"""Video in and out on PyAV (the [video] extra): files, V4L2 cameras and RTSP/HTTP streams; encoded outputs.

Why PyAV rather than OpenCV: docs/video.md. Timestamps: a file's frames keep their own (pts x time base), so
an output has the same timing; a live source's frames are stamped with the seconds since the run started,
which stay monotonic across reconnects where the source's own clock restarts.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rdd_deploy.atomic import atomic_path
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.images import check_size

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
VIDEO_MISSING = 'video files, cameras and streams need PyAV, which the base install leaves out: pip install ' \
                '"rdd-deploy[video]"'
OPEN_TIMEOUT_S = 10.0  # a stream or camera that sends nothing for this long counts as stopped
_CAMERA = re.compile(r"/dev/video\d+")


def require_av() -> Any:
    """The av module, or one RDDError naming the [video] extra."""
    try:
        import av
    except ImportError:
        raise RDDError(VIDEO_MISSING) from None
    return av


def is_video_source(text: str) -> bool:
    """True for a video file name, a stream URL or a /dev/videoN camera (images and folders: False)."""
    return (text.lower().startswith(STREAM_SCHEMES) or bool(_CAMERA.fullmatch(text))
            or Path(text).suffix.lower() in VIDEO_SUFFIXES)


@dataclass(frozen=True)
class Source:
    """Where frames come from: `name` as the user gave it, `live` for cameras and streams."""

    name: str
    live: bool
    camera: bool = False

    @property
    def stem(self) -> str:
        """A file-name stem for this source's outputs: the file's stem, videoN, or the URL's host and path."""
        if not self.live:
            return Path(self.name).stem
        if self.camera:
            return Path(self.name).name
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name.split("://", 1)[1]).strip("_.") or "stream"


def parse_source(text: str) -> Source:
    """A video file (checked to exist and be non-empty), a /dev/videoN camera or a stream URL."""
    if text.lower().startswith(STREAM_SCHEMES):
        return Source(text, live=True)
    if _CAMERA.fullmatch(text):
        if not os.path.exists(text):
            raise RDDError(f"camera {text} not found (no such device)")
        return Source(text, live=True, camera=True)
    path = Path(text)
    if not path.is_file():
        raise RDDError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise RDDError(f"video {path} is empty (0 bytes)")
    return Source(text, live=False)


class VideoFrame(NamedTuple):
    """One decoded frame: its index in the source, timestamp in seconds, RGB pixels, and when it was decoded."""

    index: int
    timestamp: float
    image: np.ndarray
    captured: float  # time.perf_counter() when decoding finished


def _av_error(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"


class VideoReader:
    """An opened source: its first video stream's frame rate and size, and its frames as RGB arrays."""

    def __init__(self, source: Source, timeout_s: float = OPEN_TIMEOUT_S) -> None:
        av = require_av()
        self.source = source
        options = {"rw_timeout": str(int(timeout_s * 1e6))} if source.live and not source.camera else {}
        if source.name.lower().startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": "tcp", "timeout": str(int(timeout_s * 1e6))}
        try:
            self.container = av.open(source.name, format="v4l2" if source.camera else None, options=options,
                                     timeout=timeout_s if source.live else None)
        except (av.FFmpegError, OSError) as exc:
            raise RDDError(f"cannot open {source.name}: {_av_error(exc)}") from None
        streams = self.container.streams.video
        if not streams:
            self.container.close()
            raise RDDError(f"{source.name} holds no video stream")
        self.stream = streams[0]
        context = self.stream.codec_context
        if context is None or context.codec is None or not context.codec.is_decoder:
            self.container.close()
            raise RDDError(f"{source.name}: its video codec cannot be decoded by this build of FFmpeg (unknown or "
                           "unsupported codec); convert it, e.g. to H.264")
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps: Fraction | None = Fraction(rate) if rate else None
        self.size = (context.height, context.width)

    def frames(self, start: float, first_index: int = 0) -> Iterator[VideoFrame]:
        """Decode every frame in order; `start` is the perf_counter origin of a live source's timestamps."""
        av = require_av()
        index, decoded = first_index, 0
        try:
            for frame in self.container.decode(self.stream):
                image = frame.to_ndarray(format="rgb24")
                now = time.perf_counter()
                check_size(image.shape[:2], self.source.name)
                if self.source.live or frame.time is None:
                    timestamp = now - start
                else:
                    timestamp = float(frame.time)
                yield VideoFrame(index, timestamp, image, now)
                index += 1
                decoded += 1
        except (av.FFmpegError, OSError) as exc:
            if self.source.live:
                raise SourceStopped(f"{_av_error(exc)} after frame {index - 1}") from None
            where = f" after frame {index - 1} (truncated or corrupt)" if decoded else ""
            raise RDDError(f"cannot decode {self.source.name}{where}: {_av_error(exc)}") from None
        if decoded == 0 and not self.source.live:
            raise RDDError(f"{self.source.name} holds no decodable video frame (empty or corrupt)")

    def close(self) -> None:
        """Release the file, device or connection."""
        self.container.close()


class SourceStopped(RDDError):
    """A camera or stream that failed: a dropped connection, a device unplugged."""


def reconnecting_frames(reader: VideoReader, reconnect: int, stopped: Callable[[], bool],
                        sleep: Callable[[float], None] = time.sleep) -> Iterator[VideoFrame]:
    """Frames of `reader`. A file ends where it ends. A camera or stream has no natural end: when it ends or
    fails it is reopened up to `reconnect` times in a row, after 0.5, 1, 2, ... s (at most 8 s), the count
    restarting once frames flow again; then an RDDError says why it stopped."""
    start, index, failures = time.perf_counter(), 0, 0
    while True:
        try:
            for frame in reader.frames(start, index):
                index, failures = frame.index + 1, 0
                yield frame
            reason = "the stream ended"
        except SourceStopped as exc:
            reason = str(exc)
        finally:
            reader.close()
        if not reader.source.live or stopped():
            return
        while failures < reconnect and not stopped():
            sleep(min(0.5 * 2 ** failures, 8.0))
            failures += 1
            try:
                reader = VideoReader(reader.source)
                break
            except RDDError as exc:
                reason = str(exc)
        else:
            if stopped():
                return
            tries = f"; {reconnect} reconnect attempts failed" if reconnect else " (--reconnect N reopens it)"
            raise RDDError(f"{reader.source.name} stopped: {reason}{tries}")


CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov", ".webm": "webm"}


class VideoWriter:
    """Encodes frames with their timestamps; written under a hidden temporary name and renamed by close(), so the
    file is either absent or a complete, playable video with every frame written so far."""

    def __init__(self, path: str | os.PathLike, fps: Fraction, size: tuple[int, int], codec: str = "h264",
                 gray: bool = False) -> None:
        av = require_av()
        self.path = Path(path)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self.count = 0
        try:
            self.container = av.open(str(self._tmp), "w", format=CONTAINERS[self.path.suffix.lower()])
            self.stream = self.container.add_stream(codec, rate=fps)
        except (av.FFmpegError, ValueError) as exc:
            self._atomic.__exit__(RDDError, None, None)
            raise RDDError(f"cannot write {self.path} with codec {codec}: {_av_error(exc)}") from None
        self.stream.height, self.stream.width = size
        even = size[0] % 2 == 0 and size[1] % 2 == 0  # 4:2:0 chroma needs even sides
        self.stream.pix_fmt = "gray" if gray else "yuv420p" if even else "yuv444p"
        self.stream.codec_context.time_base = Fraction(1, 90000)  # fine enough for any timestamp given
        self._format, self._last_pts = "gray" if gray else "rgb24", -1

    def write(self, image: np.ndarray, timestamp: float) -> None:
        """Encode one frame (HxWx3 uint8 RGB, or HxW uint8 for gray) shown at `timestamp` seconds."""
        av = require_av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=self._format)
        frame.pts = max(round(timestamp * 90000), self._last_pts + 1)  # strictly increasing, as muxers demand
        frame.time_base, self._last_pts = Fraction(1, 90000), frame.pts
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def close(self) -> Path:
        """Flush the encoder, write the container's index and move the file into place."""
        self.container.mux(self.stream.encode(None))
        self.container.close()
        self._atomic.__exit__(None, None, None)
        return self.path

    def discard(self) -> None:
        """Drop the output (nothing was written worth keeping)."""
        self.container.close()
        self._atomic.__exit__(RDDError, None, None)
