"""Learning-rate schedules: linear warmup followed by constant, cosine, step, exponential or plateau decay.

Schedules built here are stepped once per optimizer step (`scheduler.step()`), except `plateau`, which takes
the monitored metric (`scheduler.step(metric)`) after each evaluation and `scheduler.step()` during warmup.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

KINDS = ("constant", "cosine", "step", "exponential", "plateau")


def lr_factor(kind: str, warmup_steps: int = 0, total_steps: int | None = None, step_size: int = 1,
              gamma: float = 0.1, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step `s` (0-based): linear warmup from 0, then the decay."""
    if kind not in KINDS or kind == "plateau":
        raise ValueError(f"Unknown schedule {kind!r}; expected one of {KINDS[:-1]} (plateau is built separately).")
    if kind == "cosine" and not total_steps:
        raise ValueError("The cosine schedule needs total_steps.")

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        after = step - warmup_steps
        if kind == "constant":
            return 1.0
        if kind == "cosine":
            progress = min(1.0, after / max(1, total_steps - warmup_steps))
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if kind == "step":
            return gamma ** (after // max(1, step_size))
        return gamma ** after  # exponential

    return factor


class WarmupPlateau:
    """Linear warmup, then ReduceLROnPlateau on a monitored metric."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0, mode: str = "min",
                 factor: float = 0.5, patience: int = 5, min_lr: float = 0.0):
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.steps = 0
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.plateau = ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr)
        if warmup_steps > 0:
            self._set_scale(1 / warmup_steps)

    def _set_scale(self, scale: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * scale

    def step(self, metric: float | None = None) -> None:
        """Without a metric: one optimizer step of warmup. With a metric: one plateau check."""
        if metric is None:
            self.steps += 1
            if self.steps <= self.warmup_steps:
                self._set_scale(min(1.0, (self.steps + 1) / self.warmup_steps))
            return
        self.plateau.step(metric)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"steps": self.steps, "base_lrs": self.base_lrs, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.base_lrs = state["steps"], state["base_lrs"]
        self.plateau.load_state_dict(state["plateau"])


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str = "constant", warmup_steps: int = 0,
                    total_steps: int | None = None, step_size: int = 1, gamma: float = 0.1,
                    min_lr_ratio: float = 0.0, patience: int = 5, plateau_mode: str = "min"):
    """A scheduler of `kind` (see KINDS) with linear warmup over `warmup_steps` optimizer steps."""
    if kind == "plateau":
        return WarmupPlateau(optimizer, warmup_steps, mode=plateau_mode, factor=gamma, patience=patience)
    return LambdaLR(optimizer, lr_factor(kind, warmup_steps, total_steps, step_size, gamma, min_lr_ratio))
