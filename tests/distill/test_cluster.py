"""Cluster behaviour with 2 CPU processes (gloo): srun without torchrun, agreed start-up errors, preemption.

Each test starts real processes the way SLURM does (one per task, SLURM_* variables only), so what is tested
is what `srun python -m rdd_deploy ...` does on a cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rdd_deploy.checkpoint import load_checkpoint

from .conftest import tiny_config
from .test_trainer import read_log, write_config

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def srun(*args: str, tasks: int = 2, per_rank: dict[int, list[str]] | None = None) -> list[subprocess.Popen]:
    """Start `python -m rdd_deploy ARGS` as `srun --ntasks TASKS` would: SLURM's variables, no torchrun ones."""
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES and not k.startswith("SLURM_")}
    base.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0", SLURM_NTASKS=str(tasks), SLURM_STEP_ID="0",
                SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="localhost", MASTER_PORT=str(_free_port()))
    return [subprocess.Popen([sys.executable, "-m", "rdd_deploy", *args, *(per_rank or {}).get(rank, [])],
                             env={**base, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for rank in range(tasks)]


def finish(processes: list[subprocess.Popen], timeout: float = 600) -> list[tuple[int, str, float]]:
    """(exit status, stderr, seconds after the first exit) of each process."""
    results, ended = [], []
    for process in processes:
        _, err = process.communicate(timeout=timeout)
        results.append((process.returncode, err))
        ended.append(time.time())
    return [(code, err, at - min(ended)) for (code, err), at in zip(results, ended)]


@pytest.mark.slow
def test_srun_tasks_form_one_world_with_one_set_of_files(tmp_path: Path) -> None:
    # Also under test: --auto-resume on an empty folder starts a run, and an aux head whose loss weight is 0
    # (DDP used to fail at iteration 2 on its unused parameters) is not built.
    config = write_config(tmp_path / "t.yaml", tiny_config(model={"aux_head": True}, distill={"aux_weight": 0},
                                                           optim={"iters": 3}, eval={"every": 3}))
    run_dir = tmp_path / "run"
    results = finish(srun("train-teacher", str(config), "--out", str(run_dir), "--device", "cpu", "--auto-resume"))
    assert [code for code, _, _ in results] == [0, 0], results[1][1][-2000:] + results[0][1][-2000:]
    assert [r["iter"] for r in read_log(run_dir) if "loss" in r] == [1, 2, 3]  # one writer, not two
    state = load_checkpoint(run_dir / "last.pt")
    assert len(state["train_state"]["rng"]) == 2  # one RNG state per rank: a world of 2, not two worlds of 1
    assert state["model_spec"]["aux_head"] is False and not any(k.startswith("aux_head") for k in state["model"])
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "config.yaml", "last.pt", "log.jsonl",
                                                         "tensorboard"]
    assert "done" in results[0][1] and "done" not in results[1][1]  # rank 0 alone prints


@pytest.mark.slow
def test_a_path_missing_on_one_rank_fails_both_at_once_with_one_message(tmp_path: Path,
                                                                       teacher_checkpoint: Path) -> None:
    config = write_config(tmp_path / "s.yaml", tiny_config(distill={"method": "kd"},
                                                           teacher={"checkpoint": str(teacher_checkpoint)}))
    results = finish(srun("distill", str(config), "--out", str(tmp_path / "run"), "--device", "cpu",
                          per_rank={1: ["--teacher", str(tmp_path / "only_on_node_0.pt")]}))
    assert [code for code, _, _ in results] == [1, 1]
    lines = [[line for line in err.splitlines() if line.startswith("error:")] for _, err, _ in results]
    assert lines[0] == lines[1] == [f"error: checkpoint not found: {tmp_path / 'only_on_node_0.pt'}"]
    # Together: without the agreement rank 0 would wait in DDP's first broadcast for the 5-minute start-up
    # timeout, and then fail with gloo's timeout message, not this one.
    assert max(seconds for _, _, seconds in results) < 20
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
def test_sigterm_stops_both_ranks_with_a_checkpoint_and_auto_resume_finishes_bit_exact(
        tmp_path: Path, teacher_checkpoint: Path) -> None:
    config = write_config(tmp_path / "s.yaml", tiny_config(
        optim={"iters": 8}, eval={"every": 4},
        distill={"method": "rdd", "rdd": {"tfe_fraction": 0.25}}, teacher={"checkpoint": str(teacher_checkpoint)}))
    command = ("distill", str(config), "--device", "cpu", "--auto-resume", "--out")
    straight = finish(srun(*command, str(tmp_path / "straight")))
    assert [code for code, _, _ in straight] == [0, 0], straight[0][1][-2000:]

    stopped_dir = tmp_path / "stopped"
    processes = srun(*command, str(stopped_dir))
    deadline = time.time() + 240
    while time.time() < deadline and not (stopped_dir / "log.jsonl").is_file():
        time.sleep(0.01)
    while time.time() < deadline and not any("loss" in r for r in read_log(stopped_dir)):
        time.sleep(0.01)
    processes[1].send_signal(signal.SIGTERM)  # one rank only: the other must stop after the same iteration
    results = finish(processes)
    assert [code for code, _, _ in results] == [128 + signal.SIGTERM] * 2, results[0][1][-2000:]
    assert "stopped by SIGTERM" in results[0][1] and "--auto-resume" in results[0][1]
    stopped_at = load_checkpoint(stopped_dir / "last.pt")["train_state"]["iteration"]
    assert 1 <= stopped_at < 8

    resumed = finish(srun(*command, str(stopped_dir)))
    assert [code for code, _, _ in resumed] == [0, 0], resumed[0][1][-2000:]
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(tmp_path / "straight" / name)["model"], load_checkpoint(stopped_dir / name)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after a stop at iteration {stopped_at}"
    assert [r["iter"] for r in read_log(stopped_dir) if "loss" in r] == list(range(1, stopped_at + 1)) + \
        list(range(stopped_at + 1, 9))
