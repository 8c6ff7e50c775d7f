"""Non-finite loss guard: skip the optimizer step, count it, log it, stop after N consecutive bad steps."""
from __future__ import annotations

import logging
import math

import torch

from common import dist


class NonFiniteLossError(RuntimeError):
    pass


class NonFiniteGuard:
    """Call `ok = guard.check(loss, grad_norm, step)` after backward (and after unscaling and clipping),
    and take the optimizer step only when it returns True.

    The decision is agreed across DDP ranks (one tiny all-reduce), so every rank skips the same steps and the
    replicas never diverge. With fp16 the GradScaler already skips inf steps; the guard then counts them too.
    """

    def __init__(self, max_consecutive: int = 20, logger: logging.Logger | None = None, message: str | None = None):
        self.max_consecutive = max_consecutive
        self.logger = logger or logging.getLogger(__name__)
        self.message = message or "Non-finite loss or gradient"
        self.skipped_total = 0
        self.consecutive = 0

    def check(self, loss: torch.Tensor | float, grad_norm: torch.Tensor | float | None = None,
              step: int | None = None) -> bool:
        values = [loss] if grad_norm is None else [loss, grad_norm]
        bad_here = any(not math.isfinite(float(v.detach()) if torch.is_tensor(v) else float(v)) for v in values)
        bad = dist.any_rank(bad_here)
        if not bad:
            self.consecutive = 0
            return True
        self.skipped_total += 1
        self.consecutive += 1
        self.logger.warning("%s at step %s (loss=%s, grad_norm=%s): optimizer step skipped "
                            "(%d in a row, %d in total).", self.message, step, _fmt(loss), _fmt(grad_norm),
                            self.consecutive, self.skipped_total)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive steps had a non-finite loss or gradient (last at step {step}). "
                "Training is diverging: lower the learning rate, check the data for NaNs, or use bf16/fp32."
            )
        return False

    def state_dict(self) -> dict:
        return {"skipped_total": self.skipped_total, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_total, self.consecutive = int(state["skipped_total"]), int(state["consecutive"])


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{float(value.detach()) if torch.is_tensor(value) else float(value):.4g}"
