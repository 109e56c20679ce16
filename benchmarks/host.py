"""The machine a benchmark ran on, recorded in every results file so two files can be compared."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def device_info() -> dict[str, Any]:
    """CPU model, core count, GPU if any, and library versions."""
    import onnxruntime
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor() or platform.machine())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}
