"""The runtime commands: predict, bench, validate, and one red error line with exit code 1."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import rdd_deploy.data
from rdd_deploy.cli import app
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime import Segmenter
from rdd_deploy.runtime.masks import default_palette

from .test_boundary import reference_boundary_iou

runner = CliRunner()


def test_predict_writes_palette_masks_and_overlays(dynamic_onnx: Path, photo: np.ndarray, tmp_path: Path,
                                                   backend: str) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "cat.png")
    Image.fromarray(photo[:50, :64]).save(folder / "crop.jpg")
    result = runner.invoke(app, ["predict", str(dynamic_onnx), str(folder), "--out", str(tmp_path / "out"),
                                 "--overlay", "--backend", backend])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cat.png", "cat_overlay.png", "crop.png",
                                                                     "crop_overlay.png"]
    mask = Image.open(tmp_path / "out" / "cat.png")
    assert mask.mode == "P" and mask.size == (101, 75)
    assert np.array_equal(np.asarray(mask), Segmenter.from_file(dynamic_onnx).predict(photo))
    assert mask.getpalette()[:9] == [c for colour in default_palette(3) for c in colour]
    assert Image.open(tmp_path / "out" / "crop_overlay.png").size == (64, 50)


def test_predict_checks_every_image_before_writing(dynamic_onnx: Path, photo: np.ndarray, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[..., 0].astype(np.uint16) * 257).save(folder / "b.png")  # a 16-bit depth map
    result = runner.invoke(app, ["predict", str(dynamic_onnx), str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and isinstance(result.exception, RDDError)
    assert "b.png is a 16-bit grayscale image" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_predict_converts_rgba_and_grayscale_with_one_warning_line(dynamic_onnx: Path, photo: np.ndarray,
                                                                   tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])).save(folder / "b.png")
    Image.fromarray(photo).convert("RGBA").save(folder / "c.png")
    Image.fromarray(photo[..., 1]).save(folder / "d.png")
    result = runner.invoke(app, ["predict", str(dynamic_onnx), str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: converted 3 of 4 images to RGB: 2 RGBA, alpha dropped ({folder / 'b.png'}, ...); "
                        f"1 grayscale ({folder / 'd.png'})"]
    masks = {name: np.asarray(Image.open(tmp_path / "out" / f"{name}.png")) for name in "abcd"}
    assert np.array_equal(masks["a"], masks["b"]) and np.array_equal(masks["a"], masks["c"])
    assert np.array_equal(masks["d"], Segmenter.from_file(dynamic_onnx).predict(np.dstack([photo[..., 1]] * 3)))


def test_bench_json_has_one_report_per_model(dynamic_onnx: Path, static_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(dynamic_onnx), str(static_onnx), "--input-size", "48x64",
                                 "--warmup", "1", "--iters", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["settings"]["network_input_shape"] for r in data["results"]] == [[1, 3, 48, 64], [1, 3, 64, 64]]
    assert all(r["engine"]["min_ms"] <= r["engine"]["median_ms"] <= r["engine"]["p99_ms"] for r in data["results"])


def test_bench_all_times_every_backend_this_host_has(dynamic_onnx: Path, student: dict[str, Path],
                                                     tmp_path: Path) -> None:
    from rdd_deploy.runtime.engine import available_runs

    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(dynamic_onnx), str(student["checkpoint"]), "--backend", "all",
                                 "--input-size", "32x48", "--warmup", "0", "--iters", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    runs = [(r["settings"]["backend"], r["settings"]["provider"], r["settings"]["precision"])
            for r in json.loads(out.read_text())["results"]]
    expected = [("onnxruntime", "CPUExecutionProvider", "fp32")]
    expected += [("openvino", f"CPU {hint}", {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[hint])
                 for backend, hint in available_runs(dynamic_onnx) if backend == "openvino"]
    assert runs == expected + [("torch", "cpu", "fp32")]
    if importlib.util.find_spec("openvino") is not None:  # the dev extra installs it: CI times it too
        assert ("openvino", "CPU f32", "fp32") in runs
    assert all(r["settings"]["interleaved_with"] == len(runs) - 1 for r in json.loads(out.read_text())["results"])


def test_bench_with_checkpoint_reference(student: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(student["onnx"]), str(student["checkpoint"]), "--input-size", "32x48",
                                 "--warmup", "1", "--iters", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["reference"] == str(student["checkpoint"])
    assert [r["settings"]["format"] for r in data["results"]] == ["onnx", "pytorch"]
    assert data["results"][1]["speedup_vs_reference"] == 1.0


class FakeDataset:
    """What validate needs from rdd_deploy.data: len, info.class_names and raw(i) -> (uint8 image, label)."""

    def __init__(self, photo: np.ndarray, labels: list[np.ndarray]) -> None:
        self.photo, self.labels = photo, labels
        self.info = SimpleNamespace(class_names=["sky", "road", "car"], ignore_index=255)

    def __len__(self) -> int:
        return len(self.labels)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.photo, self.labels[index]


def test_validate_scores_against_labels(dynamic_onnx: Path, photo: np.ndarray, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    perfect = Segmenter.from_file(dynamic_onnx).predict(photo).astype(np.int64)
    unlabelled = np.full_like(perfect, 255)
    dataset = FakeDataset(photo, [perfect, unlabelled, perfect])
    monkeypatch.setattr(rdd_deploy.data, "build_dataset", lambda spec, split: dataset, raising=False)
    out, figure = tmp_path / "val.json", tmp_path / "confusion.png"
    result = runner.invoke(app, ["validate", str(dynamic_onnx), "--data", "fake:/nowhere", "--max-images", "2",
                                 "--json", str(out), "--backend", backend, "--confusion", str(figure)])
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert scores["images"] == 2 and scores["miou"] == 1.0 and scores["pixel_acc"] == 1.0
    assert set(scores["iou"]) == {"sky", "road", "car"}
    assert scores["boundary_miou"] == 1.0 and set(scores["boundary_iou"]) == {"sky", "road", "car"}
    counts = np.bincount(perfect.ravel(), minlength=3)  # a perfect prediction: every pixel on the diagonal
    assert scores["confusion"]["classes"] == ["sky", "road", "car"]
    assert scores["confusion"]["counts"] == np.diag(counts).tolist()
    assert Image.open(figure).size[0] > 3 * 36


def test_validate_json_carries_boundary_iou_of_the_restated_definition(
        dynamic_onnx: Path, photo: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    predicted = Segmenter.from_file(dynamic_onnx).predict(photo).astype(np.int64)
    labels = [np.roll(predicted, 3, axis=1), np.roll(predicted, -2, axis=0)]  # contours moved by a few pixels
    monkeypatch.setattr(rdd_deploy.data, "build_dataset", lambda spec, split: FakeDataset(photo, labels),
                        raising=False)
    out = tmp_path / "val.json"
    result = runner.invoke(app, ["validate", str(dynamic_onnx), "--data", "fake:/nowhere", "--json", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    expected = reference_boundary_iou([predicted, predicted], labels, 3)
    got = [scores["boundary_iou"][name] for name in ("sky", "road", "car")]
    np.testing.assert_allclose([np.nan if v is None else v for v in got], expected, rtol=1e-12)
    assert scores["boundary_miou"] == pytest.approx(np.nanmean(expected)) and scores["boundary_miou"] < 1.0
    assert "boundary IoU %" in result.output


def test_console_script_prints_one_red_line(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("rdd-deploy")
    result = subprocess.run([str(script), "predict", str(tmp_path / "missing.onnx"), str(tmp_path),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: model file not found: {tmp_path / 'missing.onnx'}"


@pytest.mark.parametrize("hidden, arguments, advice", [
    ("torch", ["distill", "configs/synthetic/student_rdd.yaml"],
     'error: `rdd-deploy distill` needs torch, which the runtime-only install leaves out: pip install '
     '"rdd-deploy[train]"'),
    ("PIL", ["predict", "model.onnx", "photo.png", "--out", "masks"], None)])  # a runtime package: the traceback stays
def test_a_missing_train_package_is_one_line_naming_the_extra(hidden: str, arguments: list[str],
                                                               advice: str | None) -> None:
    script = f"import sys; sys.modules[{hidden!r}] = None; from rdd_deploy.cli import run; run()"
    result = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1
    if advice is None:
        assert f"ModuleNotFoundError: import of {hidden} halted" in result.stderr
    else:
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(advice), result.stderr


class FileDataset:
    """The fallback: no raw(i), but the source file at image_path(i) and a torch label in dataset[i]."""

    def __init__(self, path: Path, label: np.ndarray) -> None:
        self.path, self.label = path, label
        self.info = SimpleNamespace(class_names=["sky", "road", "car"])

    def __len__(self) -> int:
        return 1

    def image_path(self, index: int) -> Path:
        return self.path

    def __getitem__(self, index: int) -> tuple[object, object]:
        import torch

        return torch.zeros(3, *self.label.shape), torch.from_numpy(self.label)


def test_validate_reads_source_files(dynamic_onnx: Path, photo: np.ndarray, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    label = Segmenter.from_file(dynamic_onnx).predict(photo).astype(np.int64)
    label[label == 0] = 1  # every class-0 prediction becomes wrong: IoU(0) = 0
    monkeypatch.setattr(rdd_deploy.data, "build_dataset", lambda spec, split: FileDataset(path, label),
                        raising=False)
    out = tmp_path / "val.json"
    result = runner.invoke(app, ["validate", str(dynamic_onnx), "--data", "files:/x", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["iou"]["sky"] == 0.0


def test_an_int8_file_tuned_for_another_device_warns_in_one_line(tiny_net, photo: np.ndarray,
                                                                  tmp_path: Path) -> None:
    from rdd_deploy.runtime.int8_targets import host_int8_target

    from .conftest import export_onnx, metadata

    host = host_int8_target()
    other = "arm64" if host != "arm64" else "x86"
    Image.fromarray(photo).save(tmp_path / "a.png")
    for target in (other, "tensorrt", host):
        model = export_onnx(tiny_net, tmp_path / f"{target}.onnx",
                            meta=metadata(precision="int8", int8={"target": target, "activations": "QUInt8"}))
        result = runner.invoke(app, ["predict", str(model), str(tmp_path / "a.png"), "--out", str(tmp_path / target)])
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
        expected = [] if target == host else [
            f"warning: {model} is INT8 tuned for {target}, but runs here on {host}; for this device re-export it "
            f"with `rdd-deploy export --precision int8 --int8-for {host}`"]
        assert warnings == expected
