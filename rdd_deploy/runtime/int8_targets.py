"""The devices an INT8 Q/DQ file can be tuned for (`export --int8-for`), which one this host is, and the note
the runtime prints when a file tuned for another device runs here.

ONNX Runtime's quantisation guidance ("Quantize ONNX Models": data type selection, reduce_range) differs per
CPU: x86-64 without VNNI multiplies U8S8 through VPMADDUBSW, whose 16-bit sums saturate, so it wants 7-bit
weights (reduce_range); VNNI CPUs and arm64 (whose int8 dot products do not saturate) want full 8-bit weights,
and 7 bits there only cost accuracy. TensorRT takes only symmetric signed INT8 (zero point 0).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

INT8_TARGETS = {
    "x86-vnni": "ONNX Runtime on an x86-64 CPU with VNNI (avx512_vnni or avx_vnni): uint8 activations, 8-bit weights",
    "x86": "ONNX Runtime on an x86-64 CPU without VNNI (AVX2): uint8 activations, 7-bit weights (reduce_range)",
    "arm64": "ONNX Runtime on an arm64 CPU: uint8 activations, 8-bit weights",
    "tensorrt": "TensorRT: symmetric int8 activations and weights (zero point 0)",
}
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")
ARM64_MACHINES = ("aarch64", "arm64")
VNNI = ("avx512_vnni", "avx_vnni")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags of this Linux host (x86 `flags`, ARM `Features`); empty where the file is missing."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def host_int8_target(machine: str | None = None, flags: set[str] | None = None) -> str | None:
    """The `--int8-for` name of this host's CPU (None on an architecture without one, e.g. ppc64le)."""
    machine = (machine or platform.machine()).lower()
    if machine in X86_MACHINES:
        return "x86-vnni" if set(VNNI) & (cpu_flags() if flags is None else flags) else "x86"
    return "arm64" if machine in ARM64_MACHINES else None


def int8_target_note(metadata: dict[str, Any], source: str, backend: str, host: str | None = None) -> str | None:
    """One line when `source` is an INT8 file tuned for another device than the one `backend` runs it on here."""
    int8 = metadata.get("int8")
    if isinstance(int8, str):  # ONNX metadata_props hold it JSON-encoded, a TensorRT sidecar as JSON itself
        try:
            int8 = json.loads(int8)
        except json.JSONDecodeError:
            return None  # not written by rdd-deploy: nothing to compare
    target = int8.get("target") if isinstance(int8, dict) else None
    runs_on = "tensorrt" if backend == "tensorrt" else host or host_int8_target()
    if target not in INT8_TARGETS or runs_on is None or target == runs_on:
        return None
    return (f"{source} is INT8 tuned for {target}, but runs here on {runs_on}; for this device re-export it with "
            f"`rdd-deploy export --precision int8 --int8-for {runs_on}`")
