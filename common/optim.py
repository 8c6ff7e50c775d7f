"""The optimizer choice several projects offer by name (laq: training.optimizer, stereo: optimizer.type), and the
one gradient-accumulation rule of every training loop."""
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


def closes_accumulation_window(micro_batches: int, accumulation: int, *, epoch_ends: bool = False) -> bool:
    """Whether the optimizer steps after this micro-batch: the one accumulation rule of every project.

    `micro_batches` counts the micro-batches trained so far, this one included (in a step-measured run from the
    start of the run; in an epoch-measured run from the start of the epoch). A window closes after every
    `accumulation`-th one. Runs measured in steps (shadow --max_iterations, stereo --num_iterations) carry an open
    window into the next epoch, so every step averages exactly `accumulation` micro-batches. Runs measured in
    epochs (vidsgg -nepoch) also close it on an epoch's last micro-batch (`epoch_ends`): the partial window steps
    with its gradients still divided by `accumulation`, as Lightning's accumulate_grad_batches does. Either way
    saves happen only after a step, so a resumed run's windows line up with the uninterrupted run's.
    """
    return micro_batches % accumulation == 0 or epoch_ends
