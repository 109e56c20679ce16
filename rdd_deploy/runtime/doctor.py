"""`rdd-deploy doctor`: what the runtime can use on this host, for bug reports and for choosing an export precision.

Reads versions and capabilities only (no model is run), and never imports PyTorch.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rdd_deploy.runtime.int8_targets import host_int8_target

NOT_INSTALLED = "not installed"
# CPU flags (Linux /proc/cpuinfo names) that decide how fast ONNX Runtime's CPU kernels run each precision.
X86_FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                "amx_bf16")
ARM_FEATURES = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve")
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def package_version(*names: str) -> str:
    """The installed version of the first distribution found among `names` (named when not the first)."""
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if name == names[0] else f"{version} ({name})"
    return NOT_INSTALLED


def onnxruntime_info() -> dict[str, Any]:
    """ONNX Runtime's version and the execution providers this build offers."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"version": NOT_INSTALLED, "providers": []}
    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def tensorrt_version() -> str:
    """The importable TensorRT's version (JetPack installs it without pip metadata), else 'not installed'."""
    try:
        import tensorrt
    except ImportError:
        return NOT_INSTALLED
    return str(tensorrt.__version__)


def cuda_python_version() -> str:
    """The version of the cuda-python bindings this process imports (how they fail without a driver depends on it)."""
    try:
        from cuda import bindings
    except ImportError:
        return package_version("cuda-python", "cuda-bindings")
    return str(getattr(bindings, "__version__", None) or package_version("cuda-python", "cuda-bindings"))


def cuda_gpus(cuda_python: str) -> tuple[list[dict[str, str]], str]:
    """Each CUDA device's name and compute capability, from cuda-python (version `cuda_python`), else nvidia-smi;
    and why none, if so."""
    from rdd_deploy.errors import RDDError
    from rdd_deploy.runtime.tensorrt_engine import device_count, gpu_properties, import_cudart

    try:
        cudart = import_cudart()
        count = device_count(cudart)
        return [dict(zip(("name", "compute_capability"), gpu_properties(cudart, index)), source="cuda-python")
                for index in range(count)], ""
    except RDDError as exc:  # no cuda-python, no driver or no device: ask nvidia-smi, which needs neither
        reason = "cuda-python not installed" if "not installed" in str(exc) else f"cuda-python {cuda_python}: {exc}"
    if shutil.which("nvidia-smi") is None:
        return [], f"{reason}; no nvidia-smi"
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"{reason}; nvidia-smi failed: {exc}"
    rows = [line.rsplit(",", 1) for line in result.stdout.splitlines() if "," in line]
    gpus = [{"name": name.strip(), "compute_capability": cc.strip(), "source": "nvidia-smi"} for name, cc in rows]
    return gpus, f"{reason}; nvidia-smi lists no GPU"


def openvino_devices() -> dict[str, Any]:
    """OpenVINO's version and the devices its runtime sees (CPU, GPU, NPU), if it is installed."""
    try:
        openvino = importlib.import_module("openvino")
    except ImportError:
        return {"version": NOT_INSTALLED, "devices": []}
    return {"version": openvino.__version__, "devices": list(openvino.Core().available_devices)}


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, architecture, core count and the precision-relevant instruction-set features."""
    model, flags = "", set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:  # x86 says flags, ARM says Features
                flags = set(value.split())
    model = model or platform.processor() or platform.machine()
    wanted = ARM_FEATURES if platform.machine().lower() in ("aarch64", "arm64") else X86_FEATURES
    return {"model": model, "architecture": platform.machine(), "cores": os.cpu_count(),
            "features": [name for name in wanted if name in flags]}


def fast_precisions(report: dict[str, Any]) -> dict[str, str]:
    """Which export precision runs fast where, and why, from the facts in `report`."""
    advice = {}
    gpus = report["gpus"]
    if gpus and report["tensorrt"] != NOT_INSTALLED:
        capability = max(float(gpu["compute_capability"]) for gpu in gpus)
        # Tensor Cores: FP16 from compute capability 7.0 (Volta), INT8 from 7.2 (Xavier) / 7.5 (Turing).
        best = "int8, fp16" if capability >= 7.2 else "fp16" if capability >= 7.0 else "fp32"
        advice["tensorrt"] = f"{best} (compute capability {capability:g}); build the engine here: rdd-deploy engine"
    providers = report["onnxruntime"]["providers"]
    if "CUDAExecutionProvider" in providers and gpus:
        advice["onnxruntime-gpu"] = "fp16, fp32 (CUDAExecutionProvider)"
    if "CPUExecutionProvider" in providers:
        # Measured on the project's 2-vCPU AMD EPYC, which lists avx512_vnni (docs/benchmarks.md): QDQ INT8 ran
        # at 0.9-1.4x the FP32 time and FP16 at 1.2-1.5x (ONNX Runtime's CPU provider has few FP16 kernels).
        dot = sorted(set(report["cpu"]["features"]) & set(INT8_DOT_PRODUCT))
        int8 = (f"int8 near fp32 speed and 4x smaller ({', '.join(dot)})" if dot
                else "int8 slower (no int8 dot-product instructions)")
        advice["onnxruntime-cpu"] = f"fp32; {int8}; fp16 slower than fp32; compare with `rdd-deploy bench`"
    if report["openvino"]["devices"]:
        advice["openvino"] = f"devices {', '.join(report['openvino']['devices'])}"
    return advice


def collect() -> dict[str, Any]:
    """Everything `rdd-deploy doctor` prints, as JSON-ready values."""
    from rdd_deploy import __version__

    cuda_python = cuda_python_version()
    gpus, no_gpu = cuda_gpus(cuda_python)
    report = {"rdd_deploy": __version__, "python": platform.python_version(),
              "os": f"{platform.system()} {platform.release()}", "numpy": package_version("numpy"),
              "onnxruntime": onnxruntime_info(), "tensorrt": tensorrt_version(),
              "cuda_python": cuda_python, "gpus": gpus,
              "gpu_note": None if gpus else no_gpu,
              "openvino": openvino_devices(), "cpu": cpu_info(), "int8_target": host_int8_target(),
              "torch": package_version("torch")}
    report["fast_precisions"] = fast_precisions(report)
    return report


def format_report(report: dict[str, Any]) -> list[str]:
    """The report as aligned `name: value` lines, the form users paste into an issue."""
    ort, cpu, openvino = report["onnxruntime"], report["cpu"], report["openvino"]
    gpus = "; ".join(f"{g['name']} (compute capability {g['compute_capability']}, via {g['source']})"
                     for g in report["gpus"]) or f"none found ({report['gpu_note']})"
    rows = [("rdd-deploy", report["rdd_deploy"]), ("python", report["python"]), ("os", report["os"]),
            ("numpy", report["numpy"]), ("onnxruntime", ort["version"]),
            ("  providers", ", ".join(ort["providers"]) or "none"), ("tensorrt", report["tensorrt"]),
            ("cuda-python", report["cuda_python"]), ("gpu", gpus), ("openvino", openvino["version"]),
            ("  devices", ", ".join(openvino["devices"]) or "none"),
            ("cpu", f"{cpu['model']} ({cpu['architecture']}, {cpu['cores']} cores)"),
            ("  features", ", ".join(cpu["features"]) or "none of " + ", ".join(X86_FEATURES)),
            ("  int8 target", f"{report['int8_target']} (export --precision int8 --int8-for {report['int8_target']})"
             if report["int8_target"] else "none: ONNX Runtime's INT8 guidance covers x86-64 and arm64"),
            ("torch", f"{report['torch']} (training and export only)")]
    rows += [(f"fast: {target}", text) for target, text in report["fast_precisions"].items()]
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]
