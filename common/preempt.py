"""Cluster preemption: on SIGTERM or SIGUSR1 finish the current step, save a checkpoint, exit cleanly.

SLURM sends SIGUSR1 some time before the time limit (`#SBATCH --signal=USR1@120`) and SIGTERM at preemption or
cancellation. torchrun does not pass SIGUSR1 on (its agent dies of it) and kills its workers 30 s after a SIGTERM,
so the sbatch templates start torchrun through `scripts/slurm/launch.py`, which shields torchrun, passes the signal
to the training processes, waits for their save, and requeues the job. The handler only sets a flag; the training
loop asks `stop_requested()` once per step (agreed across ranks) and saves before leaving the loop.
"""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from common import dist

log = logging.getLogger(__name__)

STOPPED_FILE_ENV = "PREEMPT_STOPPED_FILE"


class PreemptionHandler:
    """Use as a context manager around the training loop; restores the previous handlers on exit.

    When a signal stops the run, the file named by $PREEMPT_STOPPED_FILE (set by scripts/slurm/launch.py) is
    written, so the launcher can tell a run that was stopped early (requeue it) from one that finished.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}
        self._reported = False

    def _on_signal(self, signum, frame) -> None:
        self.received = signum
        log.warning("Received %s: will save a checkpoint after the current step and exit.",
                    signal.Signals(signum).name)

    def __enter__(self) -> "PreemptionHandler":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stop_requested(self) -> bool:
        """True on every rank as soon as any rank got a signal (so all ranks save and stop at the same step)."""
        stop = dist.any_rank(self.received is not None)
        if stop and not self._reported:
            self._reported = True
            marker = os.environ.get(STOPPED_FILE_ENV)
            if marker:
                name = signal.Signals(self.received).name if self.received else "a signal on another rank"
                Path(marker).write_text(f"stopped by {name}\n")
        return stop
