"""Atomic writes give files the mode a plain open(path, "w") gives: 0666 minus the umask, or the old file's mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rdd_deploy.atomic import atomic_path, atomic_write_text
from rdd_deploy.cli import app


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plain_open_mode(path: Path) -> int:
    """The reference: the mode Python's own open(..., "w") gives a new file."""
    path.write_text("x")
    return mode(path)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_new_file_gets_the_umask_mode_like_open(umask: Callable[[int], int], mask: int, tmp_path: Path) -> None:
    umask(mask)
    written = atomic_write_text(tmp_path / "model.json", "{}\n")
    assert mode(written) == plain_open_mode(tmp_path / "plain.json") == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "plain.json"]  # no temporary left


def test_replaced_file_keeps_its_mode(umask: Callable[[int], int], tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640


@pytest.mark.slow  # an ONNX export: about 8 s on 2 CPU cores
def test_every_written_file_is_0644_under_umask_022(umask: Callable[[int], int], tmp_path: Path) -> None:
    """Checkpoint, exported ONNX, JSON report and masks, each written by the project's own code."""
    import torch

    from rdd_deploy.checkpoint import save_checkpoint
    from rdd_deploy.models import build_model

    torch.manual_seed(0)
    spec = {"name": "deeplabv3_mbv2", "num_classes": 3, "aux_head": False, "head_channels": 16, "width_mult": 0.25}
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", {"model_spec": spec, "model": build_model(**spec).state_dict(),
                                                         "meta": {"class_names": ["a", "b", "c"], "miou": None}})
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--checkpoint", str(checkpoint), "--input-size", "64x64", "--no-verify",
                                 "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    onnx_file = tmp_path / "export" / "deeplabv3_mbv2_64x64.onnx"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "photo.png")
    result = runner.invoke(app, ["predict", str(onnx_file), str(tmp_path / "photo.png"), "--overlay",
                                 "--out", str(tmp_path / "masks")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["bench", str(onnx_file), "--warmup", "0", "--iters", "1",
                                 "--json", str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    written = [checkpoint, onnx_file, tmp_path / "bench.json", tmp_path / "masks" / "photo.png",
               tmp_path / "masks" / "photo_overlay.png"]
    assert {path.name: oct(mode(path)) for path in written} == {path.name: "0o644" for path in written}
