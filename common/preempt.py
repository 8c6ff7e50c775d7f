"""Cluster preemption: on SIGTERM or SIGUSR1 finish the current step, save a checkpoint, exit cleanly.

SLURM sends SIGUSR1 some time before the end (`#SBATCH --signal=USR1@120`) and SIGTERM at preemption;
torchrun forwards SIGTERM to its workers. The handler only sets a flag; the training loop asks
`stop_requested()` once per step (agreed across ranks) and saves before leaving the loop.
"""
from __future__ import annotations

import logging
import signal

from common import dist

log = logging.getLogger(__name__)


class PreemptionHandler:
    """Use as a context manager around the training loop; restores the previous handlers on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

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
        return dist.any_rank(self.received is not None)
