"""Optimizer and learning-rate schedule (the guide's train/utils.py), and the training visualisation."""
from __future__ import annotations

import numpy as np
import torch

from common.sched import build_scheduler
from common.viz import colorize, image_grid, to_uint8


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over the trainable parameters (a frozen ViT is left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kind = cfg["type"]
    if kind == "AdamW":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], betas=tuple(cfg["betas"]))
    if kind == "Adam":
        return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], betas=tuple(cfg["betas"]))
    if kind == "SGD":
        return torch.optim.SGD(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], momentum=cfg["betas"][0])
    raise ValueError(f"optimizer.type must be AdamW, Adam or SGD, got {kind!r}")


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, total_steps: int):
    """common.sched schedule stepped once per optimizer step (kind: constant | cosine | step | exponential)."""
    if cfg["kind"] == "plateau":
        raise ValueError("lr_scheduler.kind 'plateau' needs a monitored metric; use constant, cosine, step or exponential")
    return build_scheduler(optimizer, cfg["kind"], cfg["warmup_steps"], total_steps, cfg["step_size"], cfg["gamma"],
                           cfg["min_lr_ratio"])


def visualise(left: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, pred: torch.Tensor,
              max_error_px: float = 5.0) -> np.ndarray:
    """One row per image: left | GT | prediction | |error| (colourised; invalid GT black). Inputs (B, C, H, W)."""
    rows = []
    for i in range(left.shape[0]):
        valid_i = valid[i, 0].cpu()
        gt_i = torch.where(valid_i, gt[i, 0].float().cpu(), torch.tensor(float("nan")))
        vmax = float(gt_i[valid_i].max()) if valid_i.any() else float(pred[i].max())
        error = torch.where(valid_i, (pred[i, 0].float().cpu() - gt_i).abs(), torch.tensor(float("nan")))
        rows.append([to_uint8(left[i]), colorize(gt_i, 0.0, vmax), colorize(pred[i, 0], 0.0, vmax),
                     colorize(error, 0.0, max_error_px, colormap="inferno")])
    return image_grid(rows)
