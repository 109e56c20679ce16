"""The training loop: `train(config, run_dir)` trains a teacher (method ce) or distils a student.

One plain iteration-based loop (SGD, poly lr) for 1..N processes: torchrun starts the processes, DistEnv says
who we are, the batches do not depend on the number of processes, and rank 0 alone writes files. State is
saved atomically to `last.pt` (with optimizer, scaler, iteration and RNG) and `best.pt` (by val mIoU), so a
killed run continues where it stopped with `resume=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rdd_deploy.atomic import atomic_write_text
from rdd_deploy.checkpoint import (Normalization, load_checkpoint, meta_normalization, model_from_checkpoint,
                                   save_checkpoint)
from rdd_deploy.distill.config import TrainConfig, config_from_dict, config_to_dict
from rdd_deploy.distill.distributed import DistEnv, all_reduce_sum, convert_sync_batchnorm, init_distributed, shutdown
from rdd_deploy.distill.evaluate import evaluate_model
from rdd_deploy.distill.loader import batches
from rdd_deploy.distill.objective import Objective
from rdd_deploy.distill.renormalize import teacher_input
from rdd_deploy.distill.run_log import NullLog, RunLog
from rdd_deploy.errors import RDDError
from rdd_deploy.models import Segmentor, build_model
from rdd_deploy.runtime.preprocess import NORMALIZATIONS


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 by default on CUDA, none (fp32) on CPU unless asked for."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if setting == "fp16" else torch.bfloat16


def poly_lr(base_lr: float, iteration: int, total_iters: int, power: float) -> float:
    """The paper's schedule: base_lr * (1 - iteration / total_iters) ** power."""
    return base_lr * (1.0 - iteration / total_iters) ** power


def load_teacher(config: TrainConfig, num_classes: int, device: torch.device,
                 dtype: torch.dtype | None) -> tuple[Segmentor, Normalization]:
    """The frozen teacher (eval mode, no gradients, half precision on CUDA when asked) and its input convention."""
    teacher, meta = model_from_checkpoint(config.teacher.checkpoint)
    teacher_classes = teacher.head.classifier.out_channels
    if teacher_classes != num_classes:
        raise RDDError(f"teacher {config.teacher.checkpoint} predicts {teacher_classes} classes, "
                       f"the data set has {num_classes}")
    needs_aux = config.distill.method.endswith("rdd") and config.distill.rdd.tfe_fraction > 0
    if needs_aux and teacher.aux_head is None:
        raise RDDError(f"TFE-RDD needs a teacher with an auxiliary head; {config.teacher.checkpoint} has none "
                       "(train it with model.aux_head: true, or set distill.rdd.tfe_fraction: 0)")
    teacher.requires_grad_(False)
    teacher = teacher.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    if device.type == "cuda" and config.teacher.half:
        teacher = teacher.to(dtype or torch.float16)
    return teacher, meta_normalization(meta)


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


def _config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a} -> {b}")
    return found


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, device: str = "auto",
          log: bool = True) -> Path:
    """Run one training job (1..N processes); returns the run directory holding best.pt and last.pt."""
    env = init_distributed(device)
    try:
        return _train(config, Path(run_dir), resume, env, log)
    finally:
        shutdown(env)


def _train(config: TrainConfig, run_dir: Path, resume: bool, env: DistEnv, log: bool) -> Path:
    from rdd_deploy.data import build_dataset

    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and not last_path.is_file():
        raise RDDError(f"nothing to resume in {run_dir}: no last.pt")
    if not resume and last_path.is_file():
        raise RDDError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it "
                       "or choose another output folder")
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
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format

    spec = {"name": config.model.name, "num_classes": info.num_classes, "aux_head": config.model.aux_head,
            "head_channels": config.model.head_channels, "width_mult": config.model.width_mult,
            "variant": config.model.variant}
    model = build_model(**spec, pretrained=config.model.pretrained)
    for module in model.modules():
        if isinstance(module, nn.Dropout) and config.model.dropout is not None:
            module.p = config.model.dropout
    spec["aux_head"], spec["head_channels"] = model.aux_head is not None, model.head.classifier.in_channels
    objective = Objective(config.distill, config.optim.iters, info.ignore_index)
    teacher, teacher_input_of = None, None
    if objective.needs_teacher:
        teacher, teacher_normalization = load_teacher(config, info.num_classes, env.device, dtype)
        teacher_input_of = teacher_input(normalization, teacher_normalization)
        if teacher_input_of is not None:
            teacher_input_of = teacher_input_of.to(env.device)
    if env.distributed and config.sync_bn:
        model = convert_sync_batchnorm(model, env.device)
    model = model.to(env.device, memory_format=memory_format).train()
    optim = config.optim
    optimizer = torch.optim.SGD(model.parameters(), lr=optim.lr, momentum=optim.momentum,
                                weight_decay=optim.weight_decay)
    scaler = torch.amp.GradScaler(env.device.type, enabled=dtype == torch.float16)

    start, best_miou, resolved = 0, -1.0, config_to_dict(config)
    if resume:
        state = load_checkpoint(last_path)
        # Validated again, an older run's config gains the fields added since with their defaults.
        changed = _config_differences(config_to_dict(config_from_dict(state["train_state"]["config"])), resolved)
        if changed:
            raise RDDError(f"the config differs from the one {last_path} was trained with ({'; '.join(changed)}); "
                           "resume with the same recipe and overrides")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["train_state"]["optimizer"])
        scaler.load_state_dict(state["train_state"]["scaler"])
        start, best_miou = state["train_state"]["iteration"], state["train_state"]["best_miou"]
        _restore_rng(state["train_state"]["rng"], env)
    elif env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))

    ddp = DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None) \
        if env.distributed else model
    meta = {"class_names": list(info.class_names), "palette": [list(c) for c in info.palette],
            "channel_order": channel_order, "mean": list(mean), "std": list(std),
            "align_corners": model.align_corners, "ignore_index": info.ignore_index,
            "dataset": data.dataset, "crop_size": list(data.crop_size), "miou": None}

    def save(iteration: int, miou: float | None = None) -> None:
        rng = _gather_rng(env)  # every rank takes part; rank 0 writes
        if not env.is_main:
            return
        train_state = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "iteration": iteration,
                       "best_miou": best_miou, "rng": rng, "config": resolved}
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint(last_path, {"model_spec": spec, "model": weights, "meta": {**meta, "miou": best_miou
                                    if best_miou >= 0 else None}, "train_state": train_state})
        if miou is not None and miou >= best_miou:
            save_checkpoint(best_path, {"model_spec": spec, "model": weights, "meta": {**meta, "miou": miou}})

    def validate(iteration: int, run_log: NullLog) -> float:
        result = evaluate_model(model, val_set, info.num_classes, env, info.ignore_index, config.eval.scales,
                                config.eval.flip, dtype, class_names=info.class_names)
        run_log.evaluation(iteration, result)
        return result["miou"]

    title = f"{config.name} ({config.distill.method}, {config.model.name})"
    run_log = RunLog(run_dir, optim.iters, start, title) if env.is_main and log else NullLog()
    stream = batches(train_set, optim.batch_size, env, config.seed, data.workers, start)
    with run_log:
        for iteration in range(start, optim.iters):
            lr = poly_lr(optim.lr, iteration, optim.iters, optim.power)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = next(stream)
            images = images.to(env.device, non_blocking=True).contiguous(memory_format=memory_format) \
                if config.channels_last else images.to(env.device, non_blocking=True)
            labels = labels.to(env.device, non_blocking=True)
            teacher_out = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_images = images if teacher_input_of is None else teacher_input_of(images)
                    teacher_out = teacher(teacher_images.to(next(teacher.parameters()).dtype),
                                          objective.needs_features)
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
                values = (scalars / env.world_size).tolist()
                if not all(map(lambda v: v == v and abs(v) != float("inf"), values)):
                    raise RDDError(f"the loss is not finite at iteration {done} ({values[0]}); lower optim.lr "
                                   f"or use amp: off. The last good state is in {last_path}")
                run_log.step(done, {"lr": lr, "loss": values[0], **dict(zip(loss.terms, values[1:]))}, loss.stage)
            run_log.advance(done)
            miou = validate(done, run_log) if done % config.eval.every == 0 or done == optim.iters else None
            if miou is not None:
                best_miou = max(best_miou, miou)
            if miou is not None or done % config.save_every == 0:
                save(done, miou)
    return run_dir
