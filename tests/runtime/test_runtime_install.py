"""`pip install rdd-deploy` (no extras) is the edge runtime: no torch, and bench/validate/parity/predict work.

Builds a fresh venv from this checkout exactly as the README's "On the device" section does, then runs the
commands on ONNX models exported earlier in this session; commands that need torch say which extra to install.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import TinyNet, export_onnx

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".whl", ".gl")
SYNTHETIC = "synthetic:size=64,val=2"  # the procedural data set has 8 classes, like the models below


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding `pip install -c constraints.txt <checkout>`, built from a copy so the checkout stays clean."""
    folder = tmp_path_factory.mktemp("runtime-install")
    source = shutil.copytree(ROOT, folder / "src", ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # --no-compile: byte-compiling numpy and onnxruntime was a third of pip's CPU time (12.7 s of CPU, 8.7 s without)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", "-c",
                             str(source / "constraints.txt"), str(source)], capture_output=True, text=True,
                            timeout=1800)  # a guard against a hung pip: 9 s of CPU took 10 min on a crowded host
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A dynamic and a static 64x64 export of the same 8-class network."""
    folder = tmp_path_factory.mktemp("runtime-install-models")
    net = TinyNet(num_classes=8).eval()
    return (export_onnx(net, folder / "dynamic.onnx", num_classes=8),
            export_onnx(net, folder / "static.onnx", dynamic=False, num_classes=8))


def run(venv: Path, *arguments: str | Path) -> subprocess.CompletedProcess:
    """`rdd-deploy ARGUMENTS` in the runtime venv, no terminal, 80 columns."""
    return subprocess.run([str(venv / "bin" / "rdd-deploy"), *map(str, arguments)], capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(venv.parent)})


@pytest.mark.slow  # a venv and a pip install: about 15 s of CPU
def test_runtime_only_install_has_no_torch_and_runs_the_runtime_commands(runtime_venv: Path,
                                                                         models: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    probe = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", "import torch"], capture_output=True,
                           text=True)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    dynamic, static = models

    bench = run(runtime_venv, "bench", dynamic, static, "--input-size", "64x64", "--warmup", "1", "--iters", "3",
                "--json", tmp_path / "bench.json")
    assert bench.returncode == 0, bench.stderr
    assert [r["settings"]["model"] for r in json.loads((tmp_path / "bench.json").read_text())["results"]] == [
        str(dynamic), str(static)]
    assert "…" not in bench.stdout and max(map(len, bench.stdout.splitlines())) <= 80

    validate = run(runtime_venv, "validate", static, "--data", SYNTHETIC, "--json", tmp_path / "val.json",
                   "--confusion", tmp_path / "confusion.png")
    assert validate.returncode == 0, validate.stderr
    scores = json.loads((tmp_path / "val.json").read_text())
    assert scores["images"] == 2 and 0.0 <= scores["miou"] <= 1.0 and len(scores["iou"]) == 8
    assert Image.open(tmp_path / "confusion.png").format == "PNG"  # drawn with Pillow: no matplotlib here

    report = run(runtime_venv, "report", dynamic, static, "--data", SYNTHETIC, "--out", tmp_path / "report",
                 "--warmup", "0", "--iters", "2", "--examples", "1")
    assert report.returncode == 0, report.stderr
    runs = json.loads((tmp_path / "report" / "report.json").read_text())["runs"]
    assert runs[0]["parity"] is None and all(run["parity"]["agreement"] > 99.99 for run in runs[1:])
    assert (tmp_path / "report" / "report.html").stat().st_size > 0

    parity = run(runtime_venv, "parity", "--reference", dynamic, "--model", static, "--data", SYNTHETIC)
    assert parity.returncode == 0, parity.stderr
    assert "parity passed" in parity.stderr and "100.000" in parity.stdout  # one network, two exports

    photos = tmp_path / "photos"
    photos.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 80, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(photos / "screenshot.png")
    Image.fromarray(pixels[..., 0], "L").save(photos / "infrared.png")
    predict = run(runtime_venv, "predict", dynamic, photos, "--out", tmp_path / "masks")
    assert predict.returncode == 0, predict.stderr
    assert predict.stderr.count("warning: converted 2 of 2 images to RGB") == 1
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["infrared.png", "screenshot.png"]


@pytest.mark.slow  # shares the venv of the test above
@pytest.mark.parametrize("arguments", [["quickstart"], ["distill", "configs/synthetic/student_rdd.yaml"],
                                       ["export", "--checkpoint", "student.pt"], ["models"]])
def test_training_commands_name_the_extra_in_one_line(runtime_venv: Path, arguments: list[str]) -> None:
    result = run(runtime_venv, *arguments)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.fullmatch(
        rf"error: `rdd-deploy {arguments[0]}` needs (torch|onnx), which the runtime-only install leaves out: pip "
        r'install "rdd-deploy\[train\]" \(the runtime alone runs bench, validate, parity, predict and report on '
        r"exported models\)", lines[0]), lines


@pytest.mark.slow  # adds PyAV (a 36 MB wheel) to the venv of the tests above
def test_the_video_extra_adds_pyav_and_still_no_torch(runtime_venv: Path, models: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    from .video_helpers import synthetic_frames, write_video
    source = runtime_venv.parent / "src"
    install = subprocess.run([str(runtime_venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
                              "-c", str(source / "constraints.txt"), f"{source}[video]"], capture_output=True,
                             text=True, timeout=1800)
    assert install.returncode == 0, install.stdout + install.stderr
    probe = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", "import av, torch"], capture_output=True,
                           text=True)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    video = write_video(tmp_path / "clip.mp4", synthetic_frames(5))
    predict = run(runtime_venv, "predict", models[0], video, "--out", tmp_path / "out", "--masks")
    assert predict.returncode == 0, predict.stderr
    assert len((tmp_path / "out" / "clip.jsonl").read_text().splitlines()) == 5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.jsonl", "clip_masks.mkv", "clip_overlay.mp4"]


@pytest.mark.slow  # shares the venv of the first test
def test_own_data_sets_in_the_runtime_only_install(runtime_venv: Path, models: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    from data.own_data import write_coco, write_folder  # writers of a team's own data, 8 classes like the models

    folder = f"folder:{write_folder(tmp_path / 'own', colour=True)}"
    validate = run(runtime_venv, "validate", models[1], "--data", folder, "--json", tmp_path / "val.json")
    assert validate.returncode == 0, validate.stderr
    assert json.loads((tmp_path / "val.json").read_text())["images"] == 2
    check = run(runtime_venv, "check-data", folder)
    assert check.returncode == 0 and "no problems found" in check.stderr, check.stderr
    # pycocotools is the [coco] extra's (and [train]'s): without it, coco: data sets name the extra in one line
    coco = run(runtime_venv, "validate", models[1], "--data", f"coco:{write_coco(tmp_path / 'coco', 'rle')}")
    assert coco.returncode == 1 and coco.stderr.strip() == (
        'error: coco: data sets need pycocotools: pip install "rdd-deploy[coco]" (the [train] extra includes it)')
