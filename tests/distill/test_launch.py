"""Who a process is: torchrun's variables, SLURM's srun variables (node lists included), or a single process."""

from __future__ import annotations

import pytest

from rdd_deploy.distill.distributed import cuda_device_index
from rdd_deploy.distill.launch import Launch, detect_launch, expand_nodelist, rendezvous_environment
from rdd_deploy.errors import RDDError

SRUN_TASK = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
             "SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": "gpu[07-08]"}


@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("login1", ["login1"]),
    ("a[8-10],b3", ["a8", "a9", "a10", "b3"]),
    ("gpu[1-2]-ib,cpu[009-010]", ["gpu1-ib", "gpu2-ib", "cpu009", "cpu010"]),
    ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
])
def test_compressed_node_lists_expand_like_scontrol_show_hostnames(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


def test_a_malformed_node_list_is_named() -> None:
    with pytest.raises(RDDError, match=r"node\[a-3\]"):
        expand_nodelist("node[a-3]")


def test_srun_task_gets_rank_world_and_rendezvous_from_slurm() -> None:
    launch = detect_launch(SRUN_TASK)
    assert launch == Launch(rank=5, world_size=8, local_rank=1, launcher="slurm")
    environment = rendezvous_environment(launch, SRUN_TASK)
    assert environment == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07",
                           "MASTER_PORT": str(20000 + 123456 % 20000)}
    chosen = rendezvous_environment(launch, {**SRUN_TASK, "MASTER_ADDR": "head", "MASTER_PORT": "29400"})
    assert chosen["MASTER_ADDR"] == "head" and chosen["MASTER_PORT"] == "29400"


def test_torchrun_variables_win_and_a_batch_script_is_a_single_process() -> None:
    under_torchrun = {**SRUN_TASK, "RANK": "3", "WORLD_SIZE": "16", "LOCAL_RANK": "3"}
    assert detect_launch(under_torchrun) == Launch(3, 16, 3, "torchrun")
    assert rendezvous_environment(detect_launch(under_torchrun), under_torchrun) == {}
    # sbatch's script sees SLURM_PROCID=0 and the job's SLURM_NTASKS but is one process, not a rank of 8
    batch_script = {k: v for k, v in SRUN_TASK.items() if k != "SLURM_STEP_ID"}
    assert detect_launch(batch_script) == Launch()
    with pytest.raises(RDDError, match="SLURM_PROCID='x'"):
        detect_launch({**SRUN_TASK, "SLURM_PROCID": "x"})


def test_the_gpu_is_the_local_rank_modulo_the_visible_gpus() -> None:
    assert [cuda_device_index(rank, 8) for rank in (0, 7)] == [0, 7]
    assert [cuda_device_index(rank, 1) for rank in (0, 3, 7)] == [0, 0, 0]  # srun --gpus-per-task=1
    with pytest.raises(RDDError, match="CUDA_VISIBLE_DEVICES"):
        cuda_device_index(0, 0)
