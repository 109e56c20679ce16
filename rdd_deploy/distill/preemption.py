"""Stopping on SIGTERM or SIGUSR1 without losing work: the signals SLURM and Kubernetes send before a kill.

A handler only records the signal. At each iteration boundary the ranks agree (gloo, on the host) whether
any of them got one; if so every rank stops after the same iteration, rank 0 writes last.pt, and the process
exits with 128 + the signal number (143 for SIGTERM, 138 for SIGUSR1), the status a shell reports for a
process killed by that signal, so schedulers treat the run as interrupted, not as failed by its own error.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

from rdd_deploy.distill.distributed import DistEnv, any_rank_max

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingStopped(Exception):
    """Raised on every rank after the checkpoint of a signalled stop has been written."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path) -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} after iteration {iteration}; saved {checkpoint}, "
                         "continue with --auto-resume")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process that a signal ended."""
        return 128 + self.signum


class StopSignals:
    """Within `with StopSignals() as stop:`, SIGTERM and SIGUSR1 set `stop.signum` instead of ending the process."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> StopSignals:
        # Python delivers signals to the main thread only; a loop run from another thread keeps the defaults.
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def agreed(self, env: DistEnv) -> int:
        """The signal any rank received (the same number on every rank), 0 when none did."""
        return any_rank_max(self.signum, env)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn: workers outlive the signal so the main process can finish its iteration.

    SLURM signals every process of a task, workers included; a worker killed by SIGTERM would make the next
    batch raise instead of letting the main process save.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
