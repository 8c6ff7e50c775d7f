"""The optimizer choice several projects offer by name (laq: training.optimizer, stereo: optimizer.type)."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def build_optimizer(params: torch.nn.Module | Iterable, name: str, lr: float, weight_decay: float = 0.0,
                    betas: Sequence[float] = (0.9, 0.999), momentum: float | None = None,
                    option: str = "optimizer") -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (name in any case) over `params`.

    params: a module (its parameters with requires_grad, so frozen parts are left out), or parameters / param
    groups as torch.optim takes them. betas: Adam(W)'s; SGD's momentum defaults to betas[0] (stereo's convention).
    option: the config key or flag that holds `name`, for the error message.
    """
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    kind = str(name).lower()
    if kind not in OPTIMIZERS:
        raise ValueError(f"{option}={name!r} is not an optimizer here; use one of: adam, adamw, sgd")
    if kind == "sgd":
        return torch.optim.SGD(params, lr=float(lr), weight_decay=float(weight_decay),
                               momentum=float(betas[0] if momentum is None else momentum))
    return OPTIMIZERS[kind](params, lr=float(lr), weight_decay=float(weight_decay),
                            betas=tuple(float(b) for b in betas))
