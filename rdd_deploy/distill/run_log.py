"""What a run reports: a rich progress bar with ETA, lr and loss terms, TensorBoard scalars and a JSONL log.

When stderr is not a terminal (a batch job's log file), the bar becomes one plain line per logged iteration:
rich's live display would print nothing there until the run ends.

Only rank 0 creates a RunLog; the other ranks get `NullLog`, so the training loop calls the same methods on
every rank.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class NullLog:
    """The log of ranks other than 0: accepts everything, writes nothing."""

    def __enter__(self) -> NullLog:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def step(self, iteration: int, scalars: dict[str, float], stage: str) -> None:
        """Record training scalars of one iteration."""

    def advance(self, iteration: int) -> None:
        """Move the progress bar to `iteration`."""

    def evaluation(self, iteration: int, result: dict[str, Any]) -> None:
        """Record a validation result."""

    def message(self, text: str) -> None:
        """Print a line above the progress bar."""


class RunLog(NullLog):
    """Rank 0's log: `<run>/log.jsonl`, `<run>/tensorboard/` and a progress bar (or plain lines) on stderr."""

    def __init__(self, run_dir: Path, total_iters: int, start_iteration: int, title: str,
                 console: Console | None = None) -> None:
        self.jsonl = (run_dir / "log.jsonl").open("a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter  # heavy import, rank 0 only

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_iteration or None)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[status]}"), console=console or Console(stderr=True))
        self.task = self.progress.add_task(title, total=total_iters, completed=start_iteration, status="")
        self.started = time.time()
        self.plain = not self.progress.console.is_terminal
        self.title, self.total, self.start_iteration = title, total_iters, start_iteration

    def __enter__(self) -> RunLog:
        if not self.plain:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.plain:
            self.progress.stop()
        self.writer.close()
        self.jsonl.close()

    def _write(self, record: dict[str, Any]) -> None:
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def step(self, iteration: int, scalars: dict[str, float], stage: str) -> None:
        """Write one iteration's lr and loss terms to JSONL and TensorBoard and show them on the bar."""
        self._write({"iter": iteration, "stage": stage, "time": round(time.time() - self.started, 3), **scalars})
        for key, value in scalars.items():
            self.writer.add_scalar(f"train/{key}", value, iteration)
        shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        status = f"{stage} {shown}" if stage != "-" else shown
        self.progress.update(self.task, status=status)
        if self.plain:
            elapsed = time.time() - self.started
            remaining = elapsed / max(iteration - self.start_iteration, 1) * (self.total - iteration)
            self.message(f"{self.title} {iteration}/{self.total} {status} "
                         f"elapsed {_clock(elapsed)} eta {_clock(remaining)}")

    def advance(self, iteration: int) -> None:
        """Move the progress bar to `iteration` (1-based count of finished iterations)."""
        self.progress.update(self.task, completed=iteration)

    def evaluation(self, iteration: int, result: dict[str, Any]) -> None:
        """Write a validation result (mIoU, pixel accuracy, per-class IoU) and print it."""
        self._write({"iter": iteration, "eval": result})
        self.writer.add_scalar("val/miou", result["miou"], iteration)
        self.writer.add_scalar("val/pixel_acc", result["pixel_acc"], iteration)
        self.message(f"iteration {iteration}: val mIoU {100 * result['miou']:.2f}  "
                     f"pixel acc {100 * result['pixel_acc']:.2f}")

    def message(self, text: str) -> None:
        """Print a line above the progress bar."""
        self.progress.console.print(text, highlight=False)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
