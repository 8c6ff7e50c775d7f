"""Mixed precision on CPU: 3D convolutions run in fp32 inside bf16 autocast.

CPU bf16 kernels for 3D convolutions are unreliable (non-finite weight gradients were reported, which makes the
non-finite guard skip every step) and no faster than fp32 without AMX, so under CPU autocast every Conv3d and
ConvTranspose3d module computes in fp32 while the 2D parts run in bf16. GPUs are not affected. The modules
keep their parameters and state-dict keys: only `forward` changes (a class swap, as MoGe's
gradient-checkpointing wrappers do).
"""
from __future__ import annotations

import torch
from torch import nn


class _Fp32OnCpu:
    """Mixin placed before a convolution class: fp32 compute under CPU autocast, the class's own otherwise."""

    def forward(self, x: torch.Tensor, *args, **kwargs):
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float(), *args, **kwargs)
        return super().forward(x, *args, **kwargs)


_SUBCLASSES: dict[type, type] = {}


def conv3d_in_fp32_on_cpu(model: nn.Module) -> int:
    """Make every 3D (transposed) convolution of `model` compute in fp32 under CPU autocast; returns how many.

    The class of each module is swapped for a subclass (not its bound forward patched), so deep copies such as
    the EMA's AveragedModel keep the behaviour with their own weights."""
    count = 0
    for module in model.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)) and not isinstance(module, _Fp32OnCpu):
            cls = type(module)
            if cls not in _SUBCLASSES:
                _SUBCLASSES[cls] = type(f"{cls.__name__}Fp32OnCpu", (_Fp32OnCpu, cls), {})
            module.__class__ = _SUBCLASSES[cls]
            count += 1
    return count
