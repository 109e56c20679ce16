"""Distributed set-up in one place: the same training code runs on one process or on many (torchrun).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them we are a single process and nothing here calls
torch.distributed (the peer tools' "Default process group has not been initialized" crash).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from rdd_deploy.errors import RDDError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates the summary and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group is in use."""
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistEnv:
    """Read torchrun's environment, pick the device and join the process group (NCCL on CUDA, gloo on CPU)."""
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RDDError(f"device '{device}' asked for, but torch sees no CUDA GPU")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
    else:
        target = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return DistEnv(rank, world_size, local_rank, target)


def shutdown(env: DistEnv) -> None:
    """Leave the process group (a no-op for single-process runs)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over all ranks in place (identity on a single process)."""
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(value: object, env: DistEnv) -> object:
    """Rank 0's value on every rank."""
    if not env.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
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
