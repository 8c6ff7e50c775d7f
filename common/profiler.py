"""Profiling hook: torch.profiler with a TensorBoard trace, or a no-op when disabled. Call `.step()` each step."""
from __future__ import annotations

import os

import torch


class _NoProfiler:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def step(self) -> None:
        pass


def make_profiler(enabled: bool, trace_dir: str | os.PathLike, wait: int = 2, warmup: int = 2, active: int = 6,
                  record_shapes: bool = True, profile_memory: bool = True):
    """A context manager with `.step()`; when enabled, it records `active` steps after `wait + warmup` and writes
    a trace that `tensorboard --logdir <trace_dir>` shows under the PyTorch Profiler tab."""
    if not enabled:
        return _NoProfiler()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
        on_trace_ready=torch.profiler.tensorboard_trace_handler(str(trace_dir)),
        record_shapes=record_shapes,
        profile_memory=profile_memory,
        with_stack=False,
    )
