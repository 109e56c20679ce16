"""Videos, cameras and streams: predict's outputs against the same decoded frames, live drops, faults, signals."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rdd_deploy.cli import app
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.pipeline import FrameQueue
from rdd_deploy.runtime.video import VIDEO_MISSING

from .video_helpers import MJPEGServer, decode, synthetic_frames, write_video

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "street.mp4", synthetic_frames(12))


def test_predict_on_a_video_equals_predict_on_its_decoded_frames(dynamic_onnx: Path, video: Path,
                                                                  tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(dynamic_onnx), str(video), "--out", str(tmp_path), "--masks"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["street.jsonl", "street_masks.mkv", "street_overlay.mp4"]
    frames, times, _ = decode(video)
    segmenter = Segmenter.from_file(dynamic_onnx)
    expected = [segmenter.predict(frame) for frame in frames]
    assert len({mask.tobytes() for mask in expected}) > 1 and len(np.unique(expected)) > 1  # the test can fail

    masks, mask_times, _ = decode(tmp_path / "street_masks.mkv", "gray")
    assert len(masks) == len(expected) == 12
    assert all(np.array_equal(m, e) for m, e in zip(masks, expected))  # lossless and in order
    overlay, overlay_times, stream = decode(tmp_path / "street_overlay.mp4")
    assert len(overlay) == 12 and overlay[0].shape == frames[0].shape and stream.average_rate == 12
    assert overlay_times == pytest.approx(times, abs=1e-3) and mask_times == pytest.approx(times, abs=1e-3)

    lines = [json.loads(line) for line in (tmp_path / "street.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(12))
    assert [line["timestamp"] for line in lines] == pytest.approx(times, abs=1e-6)  # written to the microsecond
    assert all(line["latency_ms"] > 0 for line in lines)
    share = np.bincount(expected[5].ravel(), minlength=3) / expected[5].size
    assert list(lines[5]["class_share"]) == ["sky", "road", "car"]
    assert list(lines[5]["class_share"].values()) == pytest.approx(share, abs=1e-6)
    assert "frames written" in result.stdout and "12" in result.stdout


def test_stream_yields_every_frame_of_a_file_in_order(static_onnx: Path, video: Path) -> None:
    segmenter = Segmenter.from_file(static_onnx)  # a static model: resized to 64x64 and back
    frames, times, _ = decode(video)
    stream = segmenter.stream(str(video))
    results = list(stream)
    assert [r.index for r in results] == list(range(12)) and stream.dropped == 0
    assert [r.timestamp for r in results] == pytest.approx(times)
    assert all(np.array_equal(r.image, f) and np.array_equal(r.mask, segmenter.predict(f))
               for r, f in zip(results, frames))


class Slow(Segmenter):
    """A deliberately slow model: each frame takes `seconds` longer."""

    seconds = 0.15

    def predict(self, image: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return super().predict(image)


@pytest.mark.slow  # a 2.5 s stream
def test_a_live_mjpeg_stream_drops_stale_frames_behind_a_slow_model(dynamic_onnx: Path) -> None:
    base = Segmenter.from_file(dynamic_onnx)
    slow = Slow(base.engine, base.info, base.source)
    with MJPEGServer(frames=50, fps=20) as server:
        stream = slow.stream(server.url)
        results = []
        with pytest.raises(RDDError, match=r"stopped: .* \(--reconnect N reopens it\)"):
            for frame in stream:
                results.append(frame)
    indices = [r.index for r in results]
    assert server.served == 50 and stream.dropped > 0
    assert len(results) + stream.dropped == 50  # every decoded frame was either segmented or counted as dropped
    assert indices == sorted(set(indices)) and indices[-1] == 49  # newest first, the last one not lost
    levels = [round(float(r.image.mean()) / 4) for r in results]  # frame i is gray level 4 i
    assert levels == indices
    assert all(r.mask.shape == (64, 96) for r in results)


def test_drop_stale_queue_keeps_the_newest_frame_and_every_marker() -> None:
    from rdd_deploy.runtime.pipeline import _END
    from rdd_deploy.runtime.video import VideoFrame
    stop = threading.Event()
    live = FrameQueue(stop, drop_stale=True)
    frames = [VideoFrame(i, i / 10, np.zeros((1, 1, 3), np.uint8), 0.0) for i in range(5)]
    for frame in frames:
        live.put(frame)
    live.put(_END, marker=True)
    assert live.dropped == 4 and live.get() is frames[4] and live.get() is _END
    kept = FrameQueue(stop, drop_stale=False, size=2)
    kept.put(frames[0])
    kept.put(frames[1])
    stop.set()  # a full queue waits for room until the stream is stopped
    assert kept.put(frames[2]) is False and kept.dropped == 0
    assert [kept.get(), kept.get()] == frames[:2] and kept.get() is _END


@pytest.mark.slow  # two connections and two back-offs: about 3 s
def test_reconnect_retries_then_stops_with_one_line_keeping_a_playable_output(dynamic_onnx: Path,
                                                                              tmp_path: Path) -> None:
    with MJPEGServer(frames=10, fps=40, connections=2) as server:
        result = subprocess.run([sys.executable, "-m", "rdd_deploy", "predict", str(dynamic_onnx), server.url,
                                 "--out", str(tmp_path), "--reconnect", "2", "--keep-all-frames"],
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {server.url} stopped: ") and last.endswith("2 reconnect attempts failed"), last
    stem = "127.0.0.1_" + server.url.split(":")[2].replace("/", "_")
    lines = (tmp_path / f"{stem}.jsonl").read_text().splitlines()
    overlay, times, _ = decode(tmp_path / f"{stem}_overlay.mp4")
    assert len(lines) == len(overlay) == 20  # both connections, every frame (--keep-all-frames)
    assert times == sorted(times) and "frames written" in result.stdout
    status = r"\d+ frames, [\d.]+ FPS, latency p50 \d+ ms, p99 \d+ ms, 0 dropped"  # plain lines off a terminal
    assert re.fullmatch(rf"{re.escape(server.url)}: {status}", result.stderr.splitlines()[0]), result.stderr


@pytest.mark.slow  # a subprocess segmenting a 64x96 video until the signal
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_video_closes_a_playable_output_with_every_processed_frame(
        dynamic_onnx: Path, tmp_path: Path, signum: int, code: int) -> None:
    total = 1500
    source = write_video(tmp_path / "long.mp4", synthetic_frames(total))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "rdd_deploy", "predict", str(dynamic_onnx), str(source),
                                "--out", str(out), "--masks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:  # wait for a few frames in the hidden JSONL
        partial = list(out.glob(".long.jsonl.*.tmp")) if out.is_dir() else []
        if partial and partial[0].read_text().count("\n") >= 3:
            break
        time.sleep(0.01)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert f"stopped by {signal.Signals(signum).name}" in " ".join(stdout.split())  # the summary's title
    lines = [json.loads(line) for line in (out / "long.jsonl").read_text().splitlines()]
    overlay, _, _ = decode(out / "long_overlay.mp4")
    masks, _, _ = decode(out / "long_masks.mkv", "gray")
    assert 3 <= len(lines) < total
    assert len(overlay) == len(masks) == len(lines) and [line["index"] for line in lines] == list(range(len(lines)))
    assert sorted(p.name for p in out.iterdir()) == ["long.jsonl", "long_masks.mkv", "long_overlay.mp4"]


def _unsupported_codec(folder: Path) -> Path:
    """A Matroska file whose codec id no FFmpeg knows (V_FFV1 renamed, same length)."""
    path = write_video(folder / "ffv1.mkv", synthetic_frames(2), codec="ffv1")
    path.write_bytes(path.read_bytes().replace(b"V_FFV1", b"V_ZZZ9"))
    return path


def _file(folder: Path, name: str, data: bytes) -> Path:
    (folder / name).write_bytes(data)
    return folder / name


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder / "missing.mp4", "video not found: {}"),
    (lambda folder: _file(folder, "empty.mp4", b""), "video {} is empty (0 bytes)"),
    (lambda folder: _file(folder, "noise.mp4", np.random.default_rng(0).bytes(4096)),
     "cannot open {}: InvalidDataError"),
    (_unsupported_codec, "{}: its video codec cannot be decoded"),
], ids=["missing", "empty", "corrupt", "unsupported-codec"])
def test_a_bad_video_is_one_line_and_writes_nothing(dynamic_onnx: Path, tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    result = runner.invoke(app, ["predict", str(dynamic_onnx), str(path), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, RDDError), result.output
    assert str(result.exception).startswith(message.format(path)), result.exception
    assert "\n" not in str(result.exception) and not (tmp_path / "out").exists()


def test_a_camera_that_does_not_exist_is_one_line(dynamic_onnx: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "rdd_deploy", "predict", str(dynamic_onnx), "--camera", "97",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: camera /dev/video97 not found (no such device)"


def test_without_the_video_extra_a_video_is_one_line_naming_it(dynamic_onnx: Path, video: Path,
                                                               tmp_path: Path) -> None:
    script = "import sys; sys.modules['av'] = None; from rdd_deploy.cli import run; run()"
    result = subprocess.run([sys.executable, "-c", script, "predict", str(dynamic_onnx), str(video), "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {VIDEO_MISSING}"


NO_TORCH = """
import sys
sys.modules["torch"] = None
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.video_predict import VideoPrediction
run = VideoPrediction(Segmenter.from_file(sys.argv[1]), sys.argv[2], sys.argv[3], masks=True)
run.run()
print(run.stats.frames, len(run.close()), sys.modules["torch"])
"""


def test_the_video_path_imports_no_torch(dynamic_onnx: Path, video: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(dynamic_onnx), str(video), str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["12", "3", "None"]


def test_bench_source_times_engine_sequential_and_concurrent(dynamic_onnx: Path, video: Path,
                                                             tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", str(dynamic_onnx), "--source", str(video), "--rounds", "1", "--json",
                                 str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "bench.json").read_text())["results"][0]
    assert row["frames"] == 12 and row["size"] == [64, 96]
    assert all(row[f"{mode}_fps"] > 0 for mode in ("engine", "sequential", "concurrent"))
    assert row["concurrent_vs_sequential"] == pytest.approx(row["concurrent_fps"] / row["sequential_fps"])
    assert "conc/seq" in result.stdout


def test_live_timestamps_count_seconds_from_the_start(dynamic_onnx: Path) -> None:
    with MJPEGServer(frames=4, fps=20) as server:
        stream = Segmenter.from_file(dynamic_onnx).stream(server.url, keep_all_frames=True)
        with pytest.raises(RDDError):
            results = []
            for frame in stream:
                results.append(frame)
    stamps = [r.timestamp for r in results]
    assert len(stamps) == 4 and stamps == sorted(stamps) and 0 <= stamps[0] < stamps[-1] < 30
