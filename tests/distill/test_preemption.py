"""Stop signals are recorded, not fatal, inside a training loop, and restored after it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from rdd_deploy.distill.distributed import DistEnv
from rdd_deploy.distill.preemption import StopSignals, TrainingStopped


def test_sigterm_and_sigusr1_are_recorded_inside_and_default_again_outside() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert stop.agreed(DistEnv()) == 0
        os.kill(os.getpid(), signal.SIGUSR1)  # would end the process with the default handler
        assert stop.agreed(DistEnv()) == signal.SIGUSR1
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.agreed(DistEnv()) == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_exits_with_128_plus_the_signal_and_says_how_to_continue() -> None:
    stopped = TrainingStopped(signal.SIGTERM, 12, Path("runs/x/last.pt"))
    assert stopped.exit_code == 143 and TrainingStopped(signal.SIGUSR1, 1, Path("l")).exit_code == 138
    assert str(stopped) == "stopped by SIGTERM after iteration 12; saved runs/x/last.pt, continue with --auto-resume"
