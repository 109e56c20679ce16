"""The training loop: `train(config, run_dir)` trains a teacher (method ce) or distils a student.

One plain iteration-based loop (SGD, poly lr) for 1..N processes: torchrun or srun starts the processes,
DistEnv says who we are, the batches do not depend on the number of processes, and rank 0 alone writes files.
State is saved atomically to `last.pt` (with optimizer, scaler, iteration and RNG) and `best.pt` (by val
mIoU), so a killed run continues where it stopped with resume "must" (--resume) or "auto" (--auto-resume:
continue when last.pt exists, else start). Start-up is agreed across ranks (all fail together), and SIGTERM /
SIGUSR1 stop every rank after the same iteration with a checkpoint (preemption.py).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rdd_deploy.atomic import atomic_write_text
from rdd_deploy.checkpoint import load_checkpoint, save_checkpoint
from rdd_deploy.distill.config import TrainConfig, config_to_dict, recipe_changes
from rdd_deploy.distill.distributed import (STARTUP_TIMEOUT, TRAINING_TIMEOUT, DistEnv, agreed_startup,
                                            all_reduce_sum, any_rank_max, broadcast_object,
                                            convert_sync_batchnorm, init_distributed, set_timeout, shutdown)
from rdd_deploy.distill.evaluate import evaluate_model
from rdd_deploy.distill.loader import DeviceNormalizer, batches
from rdd_deploy.distill.objective import Objective
from rdd_deploy.distill.precision import amp_dtype, load_teacher, teacher_forward
from rdd_deploy.distill.preemption import StopSignals, TrainingStopped
from rdd_deploy.distill.renormalize import Renormalize, teacher_input
from rdd_deploy.distill.run_log import NullLog, RunLog
from rdd_deploy.errors import RDDError
from rdd_deploy.models import Segmentor, build_model
from rdd_deploy.runtime.preprocess import NORMALIZATIONS

Resume = Literal["never", "must", "auto"]


def poly_lr(base_lr: float, iteration: int, total_iters: int, power: float) -> float:
    """The paper's schedule: base_lr * (1 - iteration / total_iters) ** power."""
    return base_lr * (1.0 - iteration / total_iters) ** power


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory of this process so far: allocated GPU memory on CUDA, the resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rng_state(env: DistEnv) -> dict[str, Any]:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(env.device) if env.device.type == "cuda" else None}


def _gather_rng(env: DistEnv) -> list[dict[str, Any]]:
    if not env.distributed:
        return [_rng_state(env)]
    states: list[Any] = [None] * env.world_size
    torch.distributed.all_gather_object(states, _rng_state(env))
    return states


def _restore_rng(states: list[dict[str, Any]], env: DistEnv) -> None:
    if len(states) != env.world_size:
        raise RDDError(f"the checkpoint was written by {len(states)} processes, this run has {env.world_size}; "
                       "resume with the same number of processes")
    torch.set_rng_state(states[env.rank]["cpu"])
    if env.device.type == "cuda" and states[env.rank]["cuda"] is not None:
        torch.cuda.set_rng_state(states[env.rank]["cuda"], env.device)


def train(config: TrainConfig, run_dir: str | Path, resume: bool | Resume = False, device: str = "auto",
          log: bool = True, startup_timeout: timedelta = STARTUP_TIMEOUT,
          timeout: timedelta = TRAINING_TIMEOUT) -> Path:
    """Run one training job (1..N processes); returns the run directory holding best.pt and last.pt.

    resume: False/"never" (refuse an existing run), True/"must" (continue last.pt), "auto" (either).
    Raises TrainingStopped on every rank after a SIGTERM/SIGUSR1 stop has saved last.pt.
    """
    mode: Resume = {True: "must", False: "never"}.get(resume, resume)  # type: ignore[arg-type]
    if mode not in ("never", "must", "auto"):
        raise RDDError(f"resume must be never, must or auto, got '{resume}'")
    env = init_distributed(device, startup_timeout)
    try:
        return _train(config, Path(run_dir), mode, env, log, timeout)
    finally:
        shutdown(env)


def _resuming(mode: Resume, run_dir: Path, exists: bool) -> bool:
    if mode == "must" and not exists:
        raise RDDError(f"nothing to resume in {run_dir}: no last.pt (--auto-resume starts a new run instead)")
    if mode == "never" and exists:
        raise RDDError(f"{run_dir} already holds a run (last.pt); pass --resume (or --auto-resume) to continue it "
                       "or choose another output folder")
    return exists


def _train(config: TrainConfig, run_dir: Path, mode: Resume, env: DistEnv, log: bool, timeout: timedelta) -> Path:
    last_path = run_dir / "last.pt"
    # Rank 0 alone looks for last.pt: on a file system with caching, ranks could disagree about a fresh file.
    exists = bool(broadcast_object(last_path.is_file() if env.is_main else None, env))
    with agreed_startup(env):  # every rank fails here, together, before the first model collective
        setup = _set_up(config, run_dir, _resuming(mode, run_dir, exists), env)
    set_timeout(env, timeout)
    return _loop(config, run_dir, env, log, setup)


@dataclass
class _Run:
    """Everything start-up builds and the loop uses."""

    model: Segmentor
    spec: dict[str, Any]
    meta: dict[str, Any]
    resolved: dict[str, Any]
    objective: Objective
    teacher: Segmentor | None
    teacher_input: Renormalize | None  # the teacher's own input convention, when the student's differs
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None
    train_set: Any
    val_set: Any
    start: int = 0
    best_miou: float = -1.0
    stream: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None


def _set_up(config: TrainConfig, run_dir: Path, resume: bool, env: DistEnv) -> _Run:
    from rdd_deploy.data import build_dataset

    last_path = run_dir / "last.pt"
    bn_batch = config.optim.batch_size // (1 if env.distributed and config.sync_bn else env.world_size)
    if bn_batch < 2:  # torch's own error names a [1, C, 1, 1] tensor and nothing the user can change
        raise RDDError(f"optim.batch_size {config.optim.batch_size} on {env.world_size} process(es) gives BatchNorm "
                       "one image per step; the pooling branches (DeepLabV3's image pooling, PSPNet's 1x1 bin) "
                       "need at least 2: raise optim.batch_size, or use sync_bn: true with several processes")
    torch.manual_seed(config.seed + env.rank)
    data = config.data
    normalization = NORMALIZATIONS[config.model.normalization]
    channel_order, mean, std = normalization
    train_set = build_dataset(data.dataset, "train", crop_size=tuple(data.crop_size),
                              scale_range=tuple(data.scale_range), flip=data.flip, mean=mean, std=std,
                              channel_order=channel_order)
    val_set = build_dataset(data.dataset, "val", max_images=data.val_max_images, mean=mean, std=std,
                            channel_order=channel_order)
    info = train_set.info
    dtype = amp_dtype(config.amp, env.device)

    # A head whose loss weight is 0 would get no gradient, and DDP (find_unused_parameters=False) fails on
    # the second iteration; an untrained aux head in a teacher would also feed TFE-RDD noise. So: not built.
    spec = {"name": config.model.name, "num_classes": info.num_classes,
            "aux_head": config.model.aux_head if config.distill.aux_weight > 0 else False,
            "head_channels": config.model.head_channels, "width_mult": config.model.width_mult,
            "variant": config.model.variant}
    model = build_model(**spec, pretrained=config.model.pretrained)
    for module in model.modules():
        if isinstance(module, nn.Dropout) and config.model.dropout is not None:
            module.p = config.model.dropout
    spec["aux_head"], spec["head_channels"] = model.aux_head is not None, model.head.classifier.in_channels
    objective = Objective(config.distill, config.optim.iters, info.ignore_index).to(env.device)
    teacher, renormalize = None, None
    if objective.needs_teacher:
        teacher, teacher_normalization = load_teacher(config, info.num_classes, env.device)
        renormalize = teacher_input(normalization, teacher_normalization)
        renormalize = renormalize.to(env.device) if renormalize is not None else None
    if env.distributed and config.sync_bn:
        model = convert_sync_batchnorm(model, env.device)
    model = model.to(env.device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    optim = config.optim
    optimizer = torch.optim.SGD(model.train().parameters(), lr=optim.lr, momentum=optim.momentum,
                                weight_decay=optim.weight_decay)
    meta = {"class_names": list(info.class_names), "palette": [list(c) for c in info.palette],
            "channel_order": channel_order, "mean": list(mean), "std": list(std),
            "align_corners": model.align_corners, "ignore_index": info.ignore_index,
            "dataset": data.dataset, "crop_size": list(data.crop_size), "miou": None}
    run = _Run(model, spec, meta, config_to_dict(config), objective, teacher, renormalize, optimizer,
               torch.amp.GradScaler(env.device.type, enabled=dtype == torch.float16), dtype, train_set, val_set)
    if resume:
        state = load_checkpoint(last_path)
        changed = recipe_changes(state["train_state"]["config"], config)
        if changed:
            raise RDDError(f"the config differs from the one {last_path} was trained with ({'; '.join(changed)}); "
                           "resume with the same recipe and overrides")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["train_state"]["optimizer"])
        run.scaler.load_state_dict(state["train_state"]["scaler"])
        run.start, run.best_miou = state["train_state"]["iteration"], state["train_state"]["best_miou"]
        _restore_rng(state["train_state"]["rng"], env)
    elif env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(run.resolved, sort_keys=False))
    run.stream = batches(train_set, optim.batch_size, env, config.seed, data.workers, run.start)
    return run


@contextmanager
def _no_cudnn_autotune() -> Iterator[None]:
    """Validation images come in many sizes; autotuning each new shape would cost more than it saves."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _loop(config: TrainConfig, run_dir: Path, env: DistEnv, log: bool, run: _Run) -> Path:
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    model, optimizer, scaler, objective, dtype = run.model, run.optimizer, run.scaler, run.objective, run.dtype
    optim, info = config.optim, run.train_set.info
    # Training crops have one fixed size: let cuDNN pick its fastest algorithms once (not bit-reproducible).
    torch.backends.cudnn.benchmark = env.device.type == "cuda"
    ddp = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None) \
        if env.distributed else model

    def save(iteration: int, miou: float | None = None) -> None:
        rng = _gather_rng(env)  # every rank takes part; rank 0 writes
        if not env.is_main:
            return
        train_state = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "iteration": iteration,
                       "best_miou": run.best_miou, "rng": rng, "config": run.resolved}
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        scored = {**run.meta, "miou": run.best_miou if run.best_miou >= 0 else None}
        save_checkpoint(last_path, {"model_spec": run.spec, "model": weights, "meta": scored,
                                    "train_state": train_state})
        if miou is not None and miou >= run.best_miou:
            save_checkpoint(best_path, {"model_spec": run.spec, "model": weights, "meta": {**run.meta, "miou": miou}})

    def validate(iteration: int, run_log: NullLog) -> float:
        with _no_cudnn_autotune():
            result = evaluate_model(model, run.val_set, info.num_classes, env, info.ignore_index, config.eval.scales,
                                    config.eval.flip, dtype, class_names=info.class_names, workers=config.data.workers)
        run_log.evaluation(iteration, result)
        return result["miou"]

    title = f"{config.name} ({config.distill.method}, {config.model.name})"
    run_log = RunLog(run_dir, optim.iters, run.start, title) if env.is_main and log else NullLog()
    normalize = DeviceNormalizer(run.meta["mean"], run.meta["std"], env.device, config.channels_last,
                                 run.meta["channel_order"])
    clock, clock_iteration = time.perf_counter(), run.start
    with run_log, StopSignals() as stop:
        for iteration in range(run.start, optim.iters):
            lr = poly_lr(optim.lr, iteration, optim.iters, optim.power)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = next(run.stream)
            images = normalize(images)
            labels = labels.to(env.device, non_blocking=True)
            teacher_out = None
            if run.teacher is not None:
                teacher_images = images if run.teacher_input is None else run.teacher_input(images)
                teacher_out = teacher_forward(run.teacher, teacher_images, dtype, objective.needs_features)
            with torch.autocast(env.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                student_out = ddp(images, objective.needs_features)
            loss = objective(student_out, teacher_out, labels, iteration)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss.total).backward()
            scaler.step(optimizer)
            scaler.update()

            done = iteration + 1
            if done % config.log_every == 0 or done == optim.iters:
                scalars = torch.stack([loss.total.detach(), *loss.terms.values()])
                all_reduce_sum(scalars, env)
                values = (scalars / env.world_size).tolist()  # waits for the GPU: the timing below is honest
                if not all(map(lambda v: v == v and abs(v) != float("inf"), values)):
                    raise RDDError(f"the loss is not finite at iteration {done} ({values[0]}); lower optim.lr "
                                   f"or use amp: off. The last good state is in {last_path}")
                now = time.perf_counter()
                speed = {"images_per_s": (done - clock_iteration) * optim.batch_size / (now - clock),
                         "peak_mem_mib": peak_memory_mib(env.device)}
                clock, clock_iteration = now, done
                run_log.step(done, {"lr": lr, "loss": values[0], **dict(zip(loss.terms, values[1:])), **speed},
                             loss.stage)
            run_log.advance(done)
            miou = validate(done, run_log) if done % config.eval.every == 0 or done == optim.iters else None
            if miou is not None:
                run.best_miou = max(run.best_miou, miou)
                clock, clock_iteration = time.perf_counter(), done  # images/s measures training, not validation
            signum = stop.agreed(env) if done < optim.iters else 0
            if miou is not None or done % config.save_every == 0 or signum:
                save(done, miou)
            if signum:
                any_rank_max(0, env)  # no rank exits before rank 0 has written last.pt (srun --kill-on-bad-exit)
                raise TrainingStopped(signum, done, last_path)
    return run_dir
