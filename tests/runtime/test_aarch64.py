"""The runtime-only install on aarch64: bench, validate, parity, predict, and logits that agree with x86.

Runs the checkout's runtime install (no PyTorch) in a Debian bookworm arm64 root file system under Debian's
qemu-user-static, on the FP32 and INT8 (`--int8-for arm64`) files exported here from the packaged synthetic
teacher, and compares the aarch64 logits and masks with this host's within the parity tolerances. It shows
correctness on aarch64, not speed: emulated timings mean nothing.

Needs root on an x86-64 Linux host (debootstrap, chroot, binfmt_misc); installs qemu-user-static,
binfmt-support and debootstrap with apt-get when missing, and skips with one line where emulation cannot be set
up. The root file system with a venv of the runtime's dependencies is cached under
$RDD_DEPLOY_CACHE (default ~/.cache/rdd-deploy)/aarch64-bookworm, so a machine pays the set-up (about 7 min:
debootstrap, then pip under emulation) once; each run then reinstalls only the checkout (no dependencies).
Two traps handled here: qemu 7.2 passes the host's x86 /proc/cpuinfo through and `import onnxruntime` then
segfaults (an ARM cpuinfo is bind-mounted over it), and the default emulated CPU has SME, with which FP32
inference is ~60x slower (QEMU_CPU=cortex-a76).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdd_deploy.runtime.parity import TOLERANCES, ParityAccumulator

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("RDD_DEPLOY_CACHE", Path.home() / ".cache" / "rdd-deploy")) / "aarch64-bookworm"
MIRROR = "http://deb.debian.org/debian"
TOOLS = {"qemu-aarch64-static": "qemu-user-static", "update-binfmts": "binfmt-support", "debootstrap": "debootstrap"}
VENV_PREFIX = "/opt/rdd-runtime-"
QEMU_CPU = "cortex-a76"  # the default (max) CPU has SME, which makes FP32 inference ~60x slower under qemu
ARM_CPUINFO = "".join(f"processor\t: {index}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
                      "crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
                      "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
                      for index in range(2))  # a Cortex-A76, as QEMU_CPU says
DATA = "synthetic:size=64,train=256,val=64,mislabel=35"  # the packaged teacher's val split
IMAGES = 6
DUMP_LOGITS = """
import sys
import numpy as np
from PIL import Image
from rdd_deploy.runtime import Segmenter
model, out, images = sys.argv[1], sys.argv[2], sys.argv[3:]
segmenter = Segmenter.from_file(model)
np.savez(out, *[segmenter.logits(np.asarray(Image.open(path).convert("RGB"))) for path in images])
"""

pytestmark = pytest.mark.slow


def run(command: list[str], timeout: float, what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a set-up step; its own output, last lines first, when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {(result.stdout + result.stderr)[-3000:]}")
    return result


def emulation() -> str | None:
    """Make this host run aarch64 binaries (binfmt_misc + qemu-user-static); why not, if it cannot."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"emulates aarch64 on x86-64 Linux only (this host: {sys.platform} {platform.machine()})"
    if os.geteuid() != 0:
        return "needs root to emulate aarch64 (debootstrap, chroot, binfmt_misc)"
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        if shutil.which("apt-get") is None:
            return f"needs Debian's {', '.join(missing)} (no apt-get here)"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        if subprocess.run(install, capture_output=True, env=env, timeout=900).returncode != 0:
            run(["apt-get", "update", "-q"], 900, "apt-get update", env=env)
            run(install, 900, f"apt-get install {' '.join(missing)}", env=env)
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True)
        if mounted.returncode != 0:
            return f"cannot mount binfmt_misc (an unprivileged container?): {mounted.stderr.decode().strip()}"
    subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        return "binfmt_misc has no enabled qemu-aarch64 entry (update-binfmts --enable qemu-aarch64 failed)"
    return None


def root_filesystem() -> Path:
    """The cached bookworm arm64 root file system with python3, venv and pip (debootstrap on first use)."""
    rootfs = CACHE / "rootfs"
    if not rootfs.is_dir():
        partial = CACHE / "rootfs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        run(["debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv,python3-pip",
             "bookworm", str(partial), MIRROR], 1800, "debootstrap bookworm arm64")
        partial.rename(rootfs)
    (rootfs / "proc").mkdir(exist_ok=True)
    (rootfs / "mnt" / "work").mkdir(parents=True, exist_ok=True)
    (CACHE / "cpuinfo").write_text(ARM_CPUINFO)
    return rootfs


def chroot(rootfs: Path, work: Path, command: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `command` as aarch64 in `rootfs`, with `work` at /mnt/work, in a private mount namespace (its mounts
    vanish with it): /proc with an ARM cpuinfo over the host's, /sys, /dev, and the host's DNS, proxy and CA
    certificates for pip."""
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": QEMU_CPU,
           "COLUMNS": "200", **{key: value for key, value in os.environ.items() if key.lower().endswith("_proxy")}}
    certificates = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    if certificates.is_file():  # a CI network that re-signs TLS needs its CA inside the chroot too
        shutil.copyfile(certificates, rootfs / "etc" / "host-ca-certificates.crt")
        env["PIP_CERT"] = "/etc/host-ca-certificates.crt"
    script = (f'set -e; mount -t proc proc "$1/proc"; mount --bind "$2" "$1/proc/cpuinfo"; '
              f'mount -t sysfs sysfs "$1/sys"; mount --rbind /dev "$1/dev"; mount --bind "$3" "$1/mnt/work"; shift 3; '
              f'exec chroot "$ROOTFS" /usr/bin/env -i {" ".join(f"{k}={v}" for k, v in env.items())} "$@"')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(rootfs),
                           str(CACHE / "cpuinfo"), str(work), *command], env={**os.environ, "ROOTFS": str(rootfs)},
                          capture_output=True, text=True, timeout=timeout, cwd="/")


def checked(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{what} on aarch64 failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def runtime_venv(rootfs: Path, work: Path) -> str:
    """A venv in the root file system with the runtime install of this checkout; the dependencies are cached per
    version of pyproject's list, the checkout itself is reinstalled on every run."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    venv = VENV_PREFIX + hashlib.sha256(json.dumps(dependencies).encode()).hexdigest()[:12]
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "tests", "runs", "docs", "*.pt",
                                                                "__pycache__", "*.egg-info", "build"))
    if not (rootfs / venv.lstrip("/") / "complete").is_file():
        shutil.rmtree(rootfs / venv.lstrip("/"), ignore_errors=True)
        checked(chroot(rootfs, work, ["python3", "-m", "venv", venv]), "python3 -m venv")
        checked(chroot(rootfs, work, [f"{venv}/bin/pip", "install", "-q", "setuptools>=69", "wheel",
                                      *dependencies], timeout=1800), "pip install of the runtime dependencies")
        (rootfs / venv.lstrip("/") / "complete").write_text("\n".join(dependencies) + "\n")
    checked(chroot(rootfs, work, [f"{venv}/bin/pip", "install", "-q", "--no-deps", "--no-build-isolation",
                                  "--force-reinstall", "/mnt/work/src"]), "pip install of the checkout")
    return venv


@pytest.fixture(scope="module")
def aarch64(tmp_path_factory: pytest.TempPathFactory):
    """(rootfs, work folder, venv): a working aarch64 runtime install, or a one-line skip."""
    reason = emulation()
    if reason is not None:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("aarch64")
    rootfs = root_filesystem()
    return rootfs, work, runtime_venv(rootfs, work)


@pytest.fixture(scope="module")
def exported(aarch64) -> dict[str, Path]:
    """FP32 and INT8 (tuned for arm64) files of the packaged synthetic teacher, exported on this x86 host, and
    val images as PNG files."""
    from rdd_deploy.data import build_dataset
    from rdd_deploy.export import ExportOptions, export
    from rdd_deploy.quickstart import PACKAGED_TEACHER

    work = aarch64[1]
    fp32, int8 = export(PACKAGED_TEACHER, ExportOptions(precision="int8", calib_data=DATA, calib_images=16,
                                                        int8_for="arm64", out=work / "models"))
    images = work / "images"
    images.mkdir()
    dataset = build_dataset(DATA, "val")
    for index in range(IMAGES):
        Image.fromarray(dataset.raw(index)[0]).save(images / f"{index}.png")
    return {"fp32": fp32, "int8": int8, "images": images}


def on_x86(path: Path, precision: str):
    """The same file run here. INT8 runs as its QDQ graph in float (graph optimisations off: DequantizeLinear ->
    float Conv -> QuantizeLinear), the reference that no CPU's integer kernels can change: an x86 CPU without VNNI
    saturates the 8-bit weights of a file tuned for arm64. The arm64 INT8 file must warn that it runs elsewhere."""
    import onnxruntime as ort

    from rdd_deploy.runtime import Segmenter
    from rdd_deploy.runtime.segmenter import Int8TargetWarning

    if precision != "int8":
        return Segmenter.from_file(path)
    with pytest.warns(Int8TargetWarning, match="tuned for arm64, but runs here on x86"):
        segmenter = Segmenter.from_file(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    segmenter.engine.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return segmenter


def inside(path: Path, work: Path) -> str:
    return "/mnt/work/" + str(path.relative_to(work))


def cli(aarch64, *args: str) -> subprocess.CompletedProcess:
    rootfs, work, venv = aarch64
    return checked(chroot(rootfs, work, [f"{venv}/bin/rdd-deploy", *args]), f"rdd-deploy {args[0]}")


def test_the_runtime_install_has_no_torch_and_runs_on_aarch64(aarch64) -> None:
    rootfs, work, venv = aarch64
    probe = checked(chroot(rootfs, work, [f"{venv}/bin/python", "-c", "import platform, importlib.util, onnxruntime;"
                                          "print(platform.machine(), importlib.util.find_spec('torch') is None)"]),
                    "python")
    assert probe.stdout.split() == ["aarch64", "True"]
    doctor = cli(aarch64, "doctor", "--json")
    report = json.loads(doctor.stdout)
    assert report["cpu"]["architecture"] == "aarch64" and report["int8_target"] == "arm64"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_aarch64_logits_and_masks_agree_with_x86(aarch64, exported: dict[str, Path], precision: str) -> None:
    rootfs, work, venv = aarch64
    paths = sorted(exported["images"].iterdir(), key=lambda path: int(path.stem))
    out = work / f"logits_{precision}.npz"
    checked(chroot(rootfs, work, [f"{venv}/bin/python", "-c", DUMP_LOGITS, inside(exported[precision], work),
                                  inside(out, work), *[inside(path, work) for path in paths]]), "logits")
    with np.load(out) as arrays:
        arm = [arrays[f"arr_{index}"] for index in range(len(paths))]
    x86 = on_x86(exported[precision], precision)
    parity = ParityAccumulator(x86.info.num_classes)
    for path, logits in zip(paths, arm):
        parity.update(x86.logits(np.asarray(Image.open(path).convert("RGB"))), logits)
    report = parity.report(precision)
    print(f"{precision}: aarch64 vs x86 argmax agreement {report.agreement:.4f} %, max |logit error| "
          f"{report.max_abs_error:.3g}")
    assert report.passed, report.failures

    masks = work / f"masks_{precision}"
    predicted = cli(aarch64, "predict", inside(exported[precision], work), inside(exported["images"], work),
                    "--out", inside(masks, work))
    warnings = [line for line in (predicted.stdout + predicted.stderr).splitlines() if line.startswith("warning:")]
    assert warnings == []  # an arm64 INT8 file on arm64: no warning about its target
    agree = total = 0
    for path in paths:
        arm_mask = np.asarray(Image.open(masks / path.name))
        x86_mask = x86.predict(np.asarray(Image.open(path).convert("RGB")))
        agree, total = agree + int((arm_mask == x86_mask).sum()), total + x86_mask.size
    assert 100 * agree / total >= TOLERANCES[precision][0]


def test_bench_validate_and_parity_run_on_aarch64(aarch64, exported: dict[str, Path]) -> None:
    from rdd_deploy.data import build_dataset
    from rdd_deploy.runtime.evaluate import dataset_samples, evaluate

    rootfs, work, venv = aarch64
    fp32, int8 = (inside(exported[p], work) for p in ("fp32", "int8"))
    cli(aarch64, "bench", fp32, int8, "--warmup", "1", "--iters", "2", "--json", "/mnt/work/bench.json")
    bench = json.loads((work / "bench.json").read_text())
    assert [(Path(r["settings"]["model"]).name, r["settings"]["precision"]) for r in bench["results"]] == [
        (exported["fp32"].name, "fp32"), (exported["int8"].name, "int8")]
    assert all("aarch64" in r["settings"]["host"] for r in bench["results"])
    cli(aarch64, "parity", "--reference", fp32, "--model", int8, "--data", DATA, "--max-images", "8",
        "--json", "/mnt/work/parity.json")  # exits 1 when INT8 breaks its tolerances against FP32
    parity = json.loads((work / "parity.json").read_text())
    print(f"aarch64 int8 vs fp32: argmax agreement {parity['agreement']:.2f} %, mIoU {parity['miou_diff']:+.2f} points")
    assert parity["passed"]
    for precision, path in (("fp32", fp32), ("int8", int8)):
        cli(aarch64, "validate", path, "--data", DATA, "--max-images", "8", "--json", f"/mnt/work/val_{precision}.json")
        arm = json.loads((work / f"val_{precision}.json").read_text())["miou"]
        x86 = evaluate(on_x86(exported[precision], precision),
                       dataset_samples(build_dataset(DATA, "val"), 8), 255)["miou"]
        assert abs(arm - x86) * 100 <= TOLERANCES[precision][1], (precision, arm, x86)
