"""Mixed precision: autocast for bf16 / fp16 / fp32 on CUDA and CPU, and a GradScaler only where fp16 needs one."""
from __future__ import annotations

import contextlib

import torch

_ALIASES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "bf16-mixed": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "16": torch.float16, "16-mixed": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "32": torch.float32, "no": torch.float32,
    "none": torch.float32, "false": torch.float32, "32-true": torch.float32,
}


def parse_precision(name: str | bool | None) -> torch.dtype:
    """'bf16' | 'fp16' | 'fp32' (and common aliases; True means bf16) to a dtype; unknown names are an error."""
    if name is True:
        return torch.bfloat16
    key = "fp32" if name in (None, False) else str(name).lower()
    if key not in _ALIASES:
        raise ValueError(f"Unknown precision {name!r}; use one of bf16, fp16, fp32.")
    return _ALIASES[key]


def autocast(device: torch.device | str, dtype: torch.dtype):
    """torch.autocast for `dtype` on `device`; a null context for fp32. fp16 on CPU is refused (very slow)."""
    device_type = torch.device(device).type
    if dtype == torch.float32:
        return contextlib.nullcontext()
    if device_type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 autocast on CPU is not supported here; use bf16 or fp32 on CPU.")
    return torch.autocast(device_type=device_type, dtype=dtype)


def grad_scaler(device: torch.device | str, dtype: torch.dtype) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 (bf16 and fp32 need no loss scaling)."""
    device_type = torch.device(device).type
    return torch.amp.GradScaler(device_type, enabled=(dtype == torch.float16))
