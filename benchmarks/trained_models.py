"""Trained checkpoints for the benchmarks that measure accuracy changes: the user's, or a short CE run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_trained_arguments(parser: argparse.ArgumentParser, train_iters: int, what: str) -> None:
    """--trained, --train-iters, --calib-images and --val-images, as every accuracy benchmark takes them."""
    parser.add_argument("--trained", type=Path, action="append", default=[],
                        help=f"trained checkpoint(s) for the {what} (default: a short CE run)")
    parser.add_argument("--train-iters", type=int, default=train_iters)
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--val-images", type=int, default=64)


def short_ce_run(out: Path, iters: int, model: dict[str, Any] | None = None) -> Path:
    """A short cross-entropy run on the quickstart's synthetic set and schedule (its student unless `model`),
    so that accuracy changes mean something; returns best.pt."""
    from rdd_deploy.distill.config import config_from_dict
    from rdd_deploy.distill.trainer import train
    from rdd_deploy.quickstart import STUDENT

    model = model or STUDENT["model"]
    config = {**STUDENT, "name": f"benchmark_{model['name']}", "model": model,
              "optim": {**STUDENT["optim"], "iters": iters}, "eval": {"every": iters}, "save_every": iters}
    train(config_from_dict(config, f"benchmark student {model['name']}"), out, device="cpu")
    return out / "best.pt"
