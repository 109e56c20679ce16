"""`rdd-deploy bench --source`: engine-only vs sequential vs concurrent video pipeline, DeepLabV3-MBV2 and -R18.

    python benchmarks/video_pipeline.py --json docs/results/video_pipeline.json
    python benchmarks/video_pipeline.py --frames 4 --rounds 1          # a quick look

Random-weight models (speed does not depend on the weights) exported with `rdd-deploy export` at 512x1024 and
19 classes; a clip of a scikit-image photo panned across a 512x1024 frame, written with PyAV (H.264). Then the
same command a user runs: rdd-deploy bench MBV2.onnx R18.onnx --source clip.mp4 --rounds N --json FILE.
All modes and models are timed interleaved round by round, so the ratios hold under a background load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from host import device_info
from PIL import Image
from random_weights import random_checkpoint

from rdd_deploy.data.cityscapes import INFO as CITYSCAPES
from rdd_deploy.runtime.video import VideoWriter

MODELS = ("deeplabv3_mbv2", "deeplabv3_r18")
SIZE = (512, 1024)


def clip(path: Path, frames: int) -> Path:
    """A photo panned across a SIZE frame, `frames` frames at 25 FPS."""
    from skimage import data
    photo = np.asarray(Image.fromarray(data.coffee()).resize((SIZE[1] * 5 // 4, SIZE[0]), Image.BILINEAR))
    writer = VideoWriter(path, Fraction(25), SIZE)
    for index in range(frames):
        left = index * (photo.shape[1] - SIZE[1]) // max(frames - 1, 1)
        writer.write(photo[:, left:left + SIZE[1]], index / 25)
    return writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("docs/results/video_pipeline.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = []
        for name in MODELS:
            spec = {"name": name, "aux_head": False, "head_channels": 256, "width_mult": 1.0}
            checkpoint = random_checkpoint(work / f"{name}.pt", spec, CITYSCAPES.class_names, SIZE)
            cli = [sys.executable, "-m", "rdd_deploy"]
            subprocess.run([*cli, "export", "--checkpoint", str(checkpoint), "--input-size", f"{SIZE[0]}x{SIZE[1]}",
                            "--out", str(work / name)], check=True)
            models.append(work / name / f"{name}_{SIZE[0]}x{SIZE[1]}.onnx")
        video = clip(work / "clip.mp4", args.frames)
        subprocess.run([*cli, "bench", *map(str, models), "--source", str(video), "--rounds", str(args.rounds),
                        "--json", str(args.json)], check=True)
    annotate(args.json)


def annotate(path: Path) -> None:
    """Add the date and the machine (library versions, CPU features) to the JSON that bench wrote."""
    import av

    results = json.loads(path.read_text())
    results.update(date=time.strftime("%Y-%m-%d"), device=device_info(), pyav=av.__version__,
                   ffmpeg_libavcodec=".".join(map(str, av.library_versions["libavcodec"])))
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
