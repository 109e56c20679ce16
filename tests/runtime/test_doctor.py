"""`rdd-deploy doctor`: facts read from this host, advice derived from them, and no PyTorch needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from rdd_deploy.runtime.doctor import NOT_INSTALLED, cpu_info, fast_precisions, format_report

SCRIPT = """
import sys
sys.modules["torch"] = None
sys.modules["tensorrt"] = None
from rdd_deploy.cli import run
sys.argv = ["rdd-deploy", "doctor", *sys.argv[1:]]
run()
"""


def doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60)


def test_doctor_json_reports_this_host_without_torch() -> None:
    result = doctor("--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["onnxruntime"] == {"version": ort.__version__, "providers": ort.get_available_providers()}
    assert report["tensorrt"] == NOT_INSTALLED
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith(("flags", "Features")))
        assert set(report["cpu"]["features"]) <= set(flags.split(":")[1].split())
        assert ("avx2" in report["cpu"]["features"]) == ("avx2" in flags.split())
        if report["cpu"]["architecture"] == "x86_64":  # the --int8-for name of this CPU: VNNI or not
            assert report["int8_target"] == ("x86-vnni" if {"avx512_vnni", "avx_vnni"} & set(flags.split()) else "x86")
    assert "onnxruntime-cpu" in report["fast_precisions"]


def test_doctor_text_is_one_aligned_line_per_fact() -> None:
    from typer.testing import CliRunner

    from rdd_deploy.cli import app

    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rdd-deploy") and any(line.startswith("tensorrt ") for line in lines)
    column = len(lines[0]) - len(lines[0].split()[-1])  # where "0.1.0" starts on the first line
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines), result.stdout


def report(features: list[str], gpus: list[dict], tensorrt: str = "10.3.0.30") -> dict:
    return {"onnxruntime": {"version": "1.20", "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]},
            "tensorrt": tensorrt, "gpus": gpus, "openvino": {"version": NOT_INSTALLED, "devices": []},
            "cpu": {"model": "ARM Cortex-A78AE", "architecture": "aarch64", "cores": 12, "features": features}}


@pytest.mark.parametrize(("capability", "tensorrt_says"), [("8.7", "int8, fp16"), ("7.0", "fp16"), ("6.1", "fp32")])
def test_fast_precisions_follow_the_gpu_and_cpu_features(capability: str, tensorrt_says: str) -> None:
    gpus = [{"name": "Orin", "compute_capability": capability, "source": "cuda-python"}]
    advice = fast_precisions(report(["asimd", "asimddp"], gpus))
    assert advice["tensorrt"].startswith(f"{tensorrt_says} (compute capability {float(capability):g})")
    assert "int8 near fp32 speed and 4x smaller (asimddp)" in advice["onnxruntime-cpu"]
    assert "int8 slower (no int8 dot-product instructions)" in fast_precisions(report(["asimd"], []))["onnxruntime-cpu"]
    assert "tensorrt" not in fast_precisions(report([], gpus, tensorrt=NOT_INSTALLED))


def test_cpu_features_come_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\n"
                       "flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n\nprocessor\t: 1\n")
    info = cpu_info(cpuinfo)
    assert info["model"] == "AMD EPYC 9R14"
    assert info["features"] == ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]
    lines = format_report({"rdd_deploy": "0", "python": "3", "os": "Linux", "numpy": "2",
                           **report(info["features"], []), "cuda_python": NOT_INSTALLED, "gpu_note": "no nvidia-smi",
                           "cpu": info, "int8_target": "x86-vnni", "torch": NOT_INSTALLED, "fast_precisions": {}})
    assert [line.split(None, 1) for line in lines if line.startswith(("  features", "gpu"))] == [
        ["gpu", "none found (no nvidia-smi)"], ["features", "avx2, fma, avx512f, avx512_vnni, avx512_bf16"]]
    column = len(lines[0]) - len(lines[0].split()[-1])  # where the values start
    rows = {line[:column].strip(): line[column:] for line in lines}
    assert rows["int8 target"] == "x86-vnni (export --precision int8 --int8-for x86-vnni)"


@pytest.mark.parametrize("cuda_python", ["12.6.3", "12.8.0", "12.9.4", "13.0.1"])
def test_doctor_without_a_driver_says_so_in_one_line(cuda_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda-python 12.6-12.8 raise RuntimeError, 12.9+ return cudaErrorInsufficientDriver: doctor exits 0 on both."""
    import trt_doubles
    from typer.testing import CliRunner

    from rdd_deploy.cli import app
    from rdd_deploy.runtime import doctor as doctor_module

    trt_doubles.install(monkeypatch, trt_doubles.World("10.3.0", driver=False, cuda_python=cuda_python))
    monkeypatch.setattr(doctor_module.shutil, "which", lambda name: None)  # no nvidia-smi to fall back on
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if not line.startswith(" "))
    assert rows["cuda-python"].strip() == cuda_python
    assert rows["gpu"].startswith(f"none found (cuda-python {cuda_python}: no NVIDIA driver (cudaGetDeviceCount: ")
    assert "Traceback" not in result.output
