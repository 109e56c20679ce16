"""Report tables stay readable in a pipe or CI log: no terminal, 80 columns, no cell cut or wrapped."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from rdd_deploy.cli import app
from rdd_deploy.runtime import Segmenter, benchmark, compare
from rdd_deploy.runtime.tables import bench_table, parity_table, print_fitted, validation_table

from .helpers import assert_no_cell_cut, render_without_terminal


@pytest.fixture
def two_models(dynamic_onnx: Path, static_onnx: Path, tmp_path: Path) -> list[Path]:
    """Two exports with names as long as real ones (model, size, precision)."""
    names = ["deeplabv3_mbv2_512x1024_dyn.onnx", "deeplabv3_mbv2_512x1024_fp16.onnx"]
    return [Path(shutil.copy(source, tmp_path / name)) for source, name in zip((dynamic_onnx, static_onnx), names)]


def test_bench_table_is_readable_at_80_columns(two_models: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    reports = [benchmark(Segmenter.from_file(path), (64, 64), 1, 0, 2, model_path=path) for path in two_models]
    table = bench_table(reports)
    assert_no_cell_cut(table, render_without_terminal(table, monkeypatch))


def test_a_table_that_fits_keeps_its_layout(two_models: list[Path]) -> None:
    table = bench_table([benchmark(Segmenter.from_file(two_models[0]), (64, 64), 1, 0, 2, model_path=two_models[0])])
    console = Console(file=io.StringIO(), width=250)
    print_fitted(table, console)
    header = next(line for line in console.file.getvalue().splitlines() if "model" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "model", "format", "MB", "runs on", "min", "mean", "p50", "p90", "p99", "std", "FPS", "e2e mean", "e2e p99",
        "e2e FPS", "x vs onnx"]


def test_validation_and_parity_tables_are_readable_at_80_columns(dynamic_onnx: Path, static_onnx: Path,
                                                                 photo: np.ndarray,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    reference, candidate = Segmenter.from_file(dynamic_onnx), Segmenter.from_file(static_onnx)
    label = reference.predict(photo)
    report = compare(reference, candidate, [(photo, label)])
    result = {"model": str(static_onnx), "precision": "fp32", "images": 1, "miou": 0.5, "pixel_acc": 0.9,
              "torch_miou": 0.51, "iou": {"sky": 0.25, "road": None, "traffic sign (left of the road)": 0.75},
              "boundary_miou": 0.3, "boundary_iou": {"sky": 0.2, "road": None, "traffic sign (left of the road)": 0.4}}
    for table in (validation_table(result), parity_table(report, f"parity: {static_onnx.name} vs {dynamic_onnx}")):
        assert_no_cell_cut(table, render_without_terminal(table, monkeypatch))


def test_bench_command_output_is_readable_in_a_pipe(two_models: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    result = CliRunner().invoke(app, ["bench", *map(str, two_models), "--input-size", "64x64", "--warmup", "0",
                                      "--iters", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in result.output, result.output
    for text in ("deeplabv3_mbv2_512x1024_dyn.onnx", "deeplabv3_mbv2_512x1024_fp16.onnx", "e2e p99", "x vs onnx",
                 "ort CPU", "1.00x"):
        assert any(text in line for line in lines), text
