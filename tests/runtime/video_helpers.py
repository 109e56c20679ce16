"""Synthetic videos written with PyAV itself, a local MJPEG-over-HTTP server, and readers for the outputs."""

from __future__ import annotations

import io
import threading
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
from PIL import Image


def synthetic_frames(count: int, size: tuple[int, int] = (64, 96)) -> list[np.ndarray]:
    """Frames with structure the tiny model segments into several classes: gradients and a moving square."""
    rows, cols = np.mgrid[0:size[0], 0:size[1]]
    frames = []
    for index in range(count):
        image = np.stack([(cols * 255 // size[1]), (rows * 255 // size[0]),
                          np.full(size, (index * 37) % 256)], axis=-1).astype(np.uint8)
        top, left = (index * 3) % (size[0] - 16), (index * 5) % (size[1] - 16)
        image[top:top + 16, left:left + 16] = (255, 255, 255) if index % 2 else (0, 0, 0)
        frames.append(image)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: int = 12, codec: str = "mpeg4") -> Path:
    """Encode `frames` with PyAV directly (not through rdd_deploy), one per 1/fps seconds."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def decode(path: Path, pix_fmt: str = "rgb24") -> tuple[list[np.ndarray], list[float], av.video.stream.VideoStream]:
    """Every frame of a video (as `pix_fmt` arrays), its timestamps in seconds, and the stream for its rate/size."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format=pix_fmt))
            times.append(float(frame.time))
        return frames, times, stream


def gray_frame(value: int, size: tuple[int, int] = (64, 96)) -> bytes:
    """A JPEG of one uniform gray level: the level tells which served frame a decoded image came from."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class MJPEGServer:
    """Serves `frames` JPEGs per connection as multipart/x-mixed-replace (an IP camera's MJPEG stream) at `fps`
    on 127.0.0.1, for the first `connections` connections; later ones get 503 (the camera is gone)."""

    def __init__(self, frames: int, fps: float, connections: int = 1, step: int = 4) -> None:
        self.frames, self.connections, self.served, self.step = frames, connections, 0, step
        self.interval = 1.0 / fps
        self.stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 -- http.server's naming
                if owner.connections == 0:
                    self.send_error(503)
                    return
                owner.connections -= 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for index in range(owner.frames):
                    if owner.stop.wait(owner.interval):
                        return
                    jpeg = gray_frame((index * owner.step) % 256)
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                    self.wfile.flush()
                    owner.served += 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MJPEGServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def frame_rate(path: Path) -> Fraction:
    """A video's stated average frame rate."""
    with av.open(str(path)) as container:
        return Fraction(container.streams.video[0].average_rate)

