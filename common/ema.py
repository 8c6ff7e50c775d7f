"""Exponential moving average of a model's weights *and buffers* (BatchNorm statistics), on AveragedModel."""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: torch.nn.Module, decay: float = 0.999) -> AveragedModel:
    """EMA copy of `model` (pass the unwrapped module, not DDP). Call `.update_parameters(model)` after each step.

    use_buffers=True averages buffers too, so BatchNorm running statistics of the EMA model are not stale.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
