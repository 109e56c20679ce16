"""Who this process is in its job: started by torchrun, by SLURM's srun without torchrun, or alone.

torchrun (and Kubernetes' PyTorchJob) set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. A task
started by `srun` has only SLURM's variables: SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID give the rank, the
world size and the rank on the node, and the first host of the step's node list is the rendezvous address.
This module imports no torch, so the command line can ask "am I rank 0?" before anything heavy loads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from rdd_deploy.errors import RDDError

# A port derived from the job id: two jobs sharing a node must not both listen on 29500.
SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000


@dataclass(frozen=True)
class Launch:
    """Rank, world size and rank on the node, and the launcher they came from."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"  # "torchrun" (any launcher that sets RANK/WORLD_SIZE), "slurm" or "single"


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list, e.g. 'gpu[01-03,07],login1' -> ['gpu01', 'gpu02', 'gpu03', 'gpu07', 'login1']."""
    hosts: list[str] = []
    for item in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", nodelist):
        hosts += _expand_host(item)
    if not hosts:
        raise RDDError(f"SLURM node list '{nodelist}' names no host")
    return hosts


def _expand_host(pattern: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    names = []
    for part in match.group(1).split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise RDDError(f"SLURM node list entry '{pattern}' has a range '{part}' that is not N or N-M")
        for number in range(int(low), int(high or low) + 1):
            names += _expand_host(f"{head}{number:0{len(low)}d}{tail}")
    return names


def first_host(nodelist: str) -> str:
    """The first host of a node list: `scontrol show hostnames` where SLURM is installed, else our own expansion."""
    scontrol = shutil.which("scontrol")
    if scontrol is not None:
        listed = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True,
                                check=False)
        if listed.returncode == 0 and listed.stdout.split():
            return listed.stdout.split()[0]
    return expand_nodelist(nodelist)[0]


def _integer(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise RDDError(f"environment variable {name}='{environ[name]}' is not an integer") from None


def detect_launch(environ: Mapping[str, str] | None = None) -> Launch:
    """The launch this process belongs to, from its environment (os.environ by default)."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return Launch(_integer(environ, "RANK"), _integer(environ, "WORLD_SIZE"),
                      _integer(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else 0, "torchrun")
    # SLURM_STEP_ID marks a task started by srun: the batch script itself also sees SLURM_PROCID=0 and the
    # job's SLURM_NTASKS, and must not wait for ranks that nobody started.
    if all(name in environ for name in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_ID")):
        return Launch(_integer(environ, "SLURM_PROCID"), _integer(environ, "SLURM_NTASKS"),
                      _integer(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0, "slurm")
    return Launch()


def rendezvous_environment(launch: Launch, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables torch.distributed's env:// rendezvous reads, for a SLURM task that has none of them."""
    environ = os.environ if environ is None else environ
    if launch.launcher != "slurm" or launch.world_size == 1:
        return {}
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    if "MASTER_ADDR" not in environ and not nodelist:
        raise RDDError("srun started this task without SLURM_JOB_NODELIST; set MASTER_ADDR to rank 0's host")
    job = environ.get("SLURM_JOB_ID", "0")
    port = SLURM_PORT_BASE + int(job) % SLURM_PORT_SPAN if job.isdigit() else 29500
    return {"RANK": str(launch.rank), "WORLD_SIZE": str(launch.world_size), "LOCAL_RANK": str(launch.local_rank),
            "MASTER_ADDR": environ.get("MASTER_ADDR") or first_host(nodelist or ""),
            "MASTER_PORT": environ.get("MASTER_PORT", str(port))}


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that prints and writes."""
    return detect_launch().rank == 0
