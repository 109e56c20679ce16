"""Distributed set-up in one place: the same training code runs on one process or on many (torchrun or srun).

launch.py says who we are (torchrun's or SLURM's variables); without a launcher we are a single process and
nothing here calls torch.distributed. Besides the main process group (NCCL on CUDA), every multi-process
run has a small gloo group, `control`, for host-side agreements that must not wait on the GPU: start-up
errors and stop requests. Both groups start with a short start-up timeout, so a rank that never arrives
fails the job in minutes, and get the training timeout once start-up has been agreed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from rdd_deploy.distill.launch import detect_launch, rendezvous_environment
from rdd_deploy.errors import RDDError

STARTUP_TIMEOUT = timedelta(minutes=5)
TRAINING_TIMEOUT = timedelta(minutes=30)
# torch >= 2.10 names it dist.set_timeout; older releases have the same function under a private name.
_set_timeout = getattr(dist, "set_timeout", None) or dist.distributed_c10d._set_pg_timeout


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control: Any = None  # the gloo ProcessGroup for host-side agreement; None on a single process

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates the summary and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group is in use."""
        return self.world_size > 1


def cuda_device_index(local_rank: int, visible: int) -> int:
    """The GPU of this rank: its rank on the node modulo the GPUs it sees (one, under srun --gpus-per-task=1)."""
    if visible < 1:
        raise RDDError("CUDA is available but torch sees no GPU (check CUDA_VISIBLE_DEVICES)")
    return local_rank % visible


def init_distributed(device: str = "auto", startup_timeout: timedelta = STARTUP_TIMEOUT) -> DistEnv:
    """Find our rank (torchrun or srun), pick the device and join the process groups (NCCL on CUDA, else gloo)."""
    launch = detect_launch()
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RDDError(f"device '{device}' asked for, but torch sees no CUDA GPU")
    if use_cuda:
        index = cuda_device_index(launch.local_rank, torch.cuda.device_count())
        torch.cuda.set_device(index)
        target = torch.device("cuda", index)
    else:
        target = torch.device("cpu")
    control = None
    if launch.world_size > 1:
        os.environ.update(rendezvous_environment(launch))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=startup_timeout,
                                    device_id=target if use_cuda else None)
        control = dist.new_group(backend="gloo", timeout=startup_timeout) if use_cuda else dist.group.WORLD
    return DistEnv(launch.rank, launch.world_size, launch.local_rank, target, control)


def set_timeout(env: DistEnv, timeout: timedelta) -> None:
    """Give both process groups `timeout` (after start-up: the longest a collective may wait for a slow rank)."""
    if env.distributed:
        _set_timeout(timeout)
        if env.control is not dist.group.WORLD:
            _set_timeout(timeout, env.control)


def shutdown(env: DistEnv) -> None:
    """Leave the process group (a no-op for single-process runs)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def agreed_startup(env: DistEnv) -> Iterator[None]:
    """Run start-up checks on every rank; if any rank fails, every rank fails with the lowest failing rank's error.

    Without this a path missing on one node makes that rank raise while the others wait in DDP's first
    collective until the timeout. An RDDError (a one-line user error) is raised as is on every rank; any other
    exception is re-raised with its traceback where it happened, and named by rank on the others.
    """
    if not env.distributed:
        yield
        return
    failure: Exception | None = None
    try:
        yield
    except Exception as exc:  # every start-up failure must reach the other ranks, whatever its type
        failure = exc
    report = None if failure is None else (isinstance(failure, RDDError), str(failure).strip().splitlines()[0]
                                           if str(failure).strip() else type(failure).__name__)
    reports: list[Any] = [None] * env.world_size
    dist.all_gather_object(reports, report, group=env.control)
    failed = [(rank, r) for rank, r in enumerate(reports) if r is not None]
    if not failed:
        return
    if failure is not None and not isinstance(failure, RDDError):
        raise failure
    rank, (user_error, text) = failed[0]
    raise RDDError(text if user_error else f"rank {rank} failed during start-up: {text}")


def any_rank_max(value: int, env: DistEnv) -> int:
    """The largest of the ranks' integers, agreed on the host (gloo) without touching the GPU stream."""
    if not env.distributed:
        return value
    flag = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=env.control)
    return int(flag.item())


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over all ranks in place (identity on a single process)."""
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: object, env: DistEnv) -> object:
    """Rank 0's value on every rank (over the host-side group)."""
    if not env.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0, group=env.control)
    return holder[0]


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics span every rank's batch, on any backend (gloo included).

    torch.nn.SyncBatchNorm only runs on GPUs; this is its CPU counterpart, so a 2-process CPU run computes
    what one process does with the whole batch. Statistics are sums all-reduced with autograd support.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm with statistics over all ranks in training, running statistics in eval."""
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        local_count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        # Two passes (mean, then squared deviations) as BatchNorm itself computes them: E[x^2] - E[x]^2
        # cancels catastrophically when a channel's mean is large next to its spread.
        sums = dist_fn.all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), local_count]))
        count = sums[-1]
        mean = sums[:channels] / count
        centered = x - mean[None, :, None, None]
        var = dist_fn.all_reduce(centered.pow(2).sum(dim=(0, 2, 3))) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * count / (count - 1).clamp_min(1), momentum)
        # Normalise the centred input (not x * scale - mean * scale): autograd would then form sum(dy * x) and
        # mean * sum(dy) separately, and their difference loses float32 precision when |mean| >> std.
        normalized = centered * torch.rsqrt(var + self.eps)[None, :, None, None]
        return normalized * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> torch.nn.SyncBatchNorm on CUDA, GlobalBatchNorm2d elsewhere; weights and statistics kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm2d):
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(model, name, replacement)
        else:
            convert_sync_batchnorm(child, device)
    return model
