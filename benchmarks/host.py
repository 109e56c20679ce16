"""The machine a benchmark ran on, recorded in every results file so two files can be compared."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def gpu_info() -> dict[str, Any] | None:
    """The CUDA GPU torch uses (name, capability, memory, SMs) with the driver and the CUDA/cuDNN builds."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    driver = None
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
        driver = query.stdout.strip().splitlines()[0] if query.returncode == 0 and query.stdout.strip() else None
    return {"name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gib": round(props.total_memory
            / 2**30, 2), "multiprocessors": props.multi_processor_count, "driver": driver,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def device_info() -> dict[str, Any]:
    """CPU model, core count, GPU if any, and library versions."""
    import onnxruntime
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor() or platform.machine())
    gpu = gpu_info()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu["name"] if gpu else None, "gpu_details": gpu,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}
