"""Optimizer, learning-rate schedule, the guide's checkpoint files, argument parsing helpers and visualisation.

Checkpoint files in WORKSPACE/checkpoint/ (all written atomically by common.checkpoint.save, main rank only):
  {step:08d}.pt            {"model_config", "model"}
  {step:08d}_optimizer.pt  {"model_config", "step", "optimizer", "lr_scheduler", "scaler", "guard", "epoch",
                            "batches_done", "rng" (one state per rank), "config"}
  {step:08d}_ema.pt        {"model_config", "model"} (the EMA weights and buffers)
  latest.pt                {"model_config", "step"}: a pointer, written last
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import torch

from common import checkpoint
from common.sched import build_scheduler
from common.viz import colorize, image_grid, to_uint8

log = logging.getLogger(__name__)
STEP_FILE = re.compile(r"(\d{8})\.pt")


def str2bool(value: str | bool) -> bool:
    """argparse type for the guide's boolean flags: true/false (also 1/0, yes/no); anything else is an error."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


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


def checkpoint_paths(folder: str | Path, step: int) -> dict[str, Path]:
    folder = Path(folder)
    return {"model": folder / f"{step:08d}.pt", "optimizer": folder / f"{step:08d}_optimizer.pt",
            "ema": folder / f"{step:08d}_ema.pt"}


def save_training_checkpoint(folder: str | Path, step: int, model_config: dict, model_state: dict,
                             training_state: dict, ema_state: dict | None, keep_last: int = 0) -> None:
    """Write the step's files, then the latest.pt pointer, then drop all but the newest keep_last steps."""
    paths = checkpoint_paths(folder, step)
    checkpoint.save(paths["model"], {"model_config": model_config, "model": model_state})
    checkpoint.save(paths["optimizer"], {"model_config": model_config, "step": step, **training_state})
    if ema_state is not None:
        checkpoint.save(paths["ema"], {"model_config": model_config, "model": ema_state})
    checkpoint.save(Path(folder) / "latest.pt", {"model_config": model_config, "step": step})
    if keep_last > 0:
        for old_step, _ in checkpoint.numbered(folder, STEP_FILE.pattern)[:-keep_last]:
            for path in checkpoint_paths(folder, old_step).values():
                path.unlink(missing_ok=True)


def resolve_checkpoint(spec: str | None, folder: str | Path) -> dict | None:
    """--checkpoint value -> {"model", "optimizer" (or None), "ema" (or None), "step", "path"}, or None (fresh).

    "latest": the step in latest.pt (fresh start when there is no latest.pt yet); an integer: that step's files;
    a .pt path: its "model" weights, plus the optimizer/EMA files beside it when it is a {step:08d}.pt, else
    weights only starting at step 0. A step whose files are missing is an error listing the steps present."""
    if spec is None or str(spec).lower() in ("", "none"):
        return None
    folder = Path(folder)
    if str(spec).lower() == "latest":
        pointer = folder / "latest.pt"
        if not pointer.is_file():
            log.info("No %s yet: starting from scratch.", pointer)
            return None
        return _load_step(folder, int(checkpoint.load(pointer)["step"]))
    if re.fullmatch(r"\d+", str(spec)):
        return _load_step(folder, int(spec))
    path = Path(spec)
    if path.suffix != ".pt":
        raise ValueError(f"--checkpoint must be a .pt path, 'latest' or a step number, got {spec!r}")
    match = STEP_FILE.fullmatch(path.name)
    if match and checkpoint_paths(path.parent, int(match.group(1)))["optimizer"].is_file():
        return _load_step(path.parent, int(match.group(1)))
    state = checkpoint.load(path)
    return {"model": state.get("model", state), "optimizer": None, "ema": None, "step": 0, "path": path}


def _load_step(folder: Path, step: int) -> dict:
    paths = checkpoint_paths(folder, step)
    missing = [str(p) for key, p in paths.items() if key != "ema" and not p.is_file()]
    if missing:
        present = [s for s, _ in checkpoint.numbered(folder, STEP_FILE.pattern)]
        raise FileNotFoundError(f"Checkpoint of step {step} is incomplete: missing {', '.join(missing)}. "
                                f"Steps present in {folder}: {present or 'none'}")
    ema = checkpoint.load(paths["ema"])["model"] if paths["ema"].is_file() else None
    return {"model": checkpoint.load(paths["model"])["model"], "optimizer": checkpoint.load(paths["optimizer"]),
            "ema": ema, "step": step, "path": paths["model"]}


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
