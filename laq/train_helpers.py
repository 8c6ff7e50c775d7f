"""Small pieces of the LAQ training loop: the section timer (the "simple" profiler), image grids, and the optional
wandb mirror."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from common.viz import image_grid, to_uint8


class SectionTimer:
    """Wall time per named section (data, forward_backward, optimizer, ...): the `simple` profiler."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def section(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.total[name] += time.perf_counter() - start
            self.calls[name] += 1

    def report(self) -> str:
        grand = sum(self.total.values()) or 1.0
        lines = [f"{'section':<20} {'calls':>7} {'total_s':>9} {'mean_ms':>9} {'share':>6}"]
        for name, seconds in sorted(self.total.items(), key=lambda kv: -kv[1]):
            lines.append(f"{name:<20} {self.calls[name]:>7} {seconds:>9.2f} "
                         f"{1000 * seconds / self.calls[name]:>9.1f} {100 * seconds / grand:>5.1f}%")
        return "\n".join(lines)


def pair_grid(first: torch.Tensor, future: torch.Tensor, recon: torch.Tensor) -> np.ndarray:
    """Rows of first | future | predicted (each (B, 3, H, W) in [0, 1]) as one (H', W', 3) uint8 image."""
    return image_grid([[to_uint8(first[i]), to_uint8(future[i]), to_uint8(recon[i].clamp(0, 1))]
                       for i in range(first.shape[0])])


class WandbMirror:
    """Mirror scalars to wandb when logging.use_wandb=true (main rank only); offline mode needs no network."""

    def __init__(self, enabled: bool, project: str, mode: str, run_dir: Path, config: dict):
        self.run = None
        if not enabled:
            return
        try:
            import wandb
        except ImportError as exc:
            raise ImportError("logging.use_wandb=true needs the wandb package: pip install wandb "
                              "(or set logging.use_wandb=false; TensorBoard logging is always on)") from exc
        self.run = wandb.init(project=project, mode=mode, dir=str(run_dir), config=config)

    def log(self, values: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(dict(values), step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
