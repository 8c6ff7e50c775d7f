"""The guide's checkpoint files (MoGe's layout) in WORKSPACE/checkpoint/, and their housekeeping.

  {step:08d}.pt            {"model_config", "model"}
  {step:08d}_ema.pt        {"model_config", "model" (EMA weights and buffers), "n_averaged"}
  {step:08d}_optimizer.pt  {"model_config", "step", "optimizer", "lr_scheduler", "scaler", "guard", "epoch",
                            "batches_done", "rng" (one state per rank), "config", "settings", "world_size",
                            "mlflow_run_id"}
  latest.pt                {"model_config", "step"}: a pointer, written last

Every file is written atomically (common.checkpoint.save) by the main rank, in the order model, EMA, optimizer,
pointer: a step whose optimizer file exists has its model and EMA files complete beside it, so the optimizer
file marks a complete step (stereo.train.resume reads it that way).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from torch.optim.swa_utils import AveragedModel

from common import checkpoint

log = logging.getLogger(__name__)
STEP_FILE = r"(\d{8})\.pt"
OPTIMIZER_FILE = r"(\d{8})_optimizer\.pt"
POINTER = "latest.pt"
TEMP_FILE = re.compile(r"\..+\.tmp")  # common.checkpoint.save writes `.NAME.XXXXXXXX.tmp`, then renames it


def step_paths(folder: str | Path, step: int) -> dict[str, Path]:
    folder = Path(folder)
    return {"model": folder / f"{step:08d}.pt", "ema": folder / f"{step:08d}_ema.pt",
            "optimizer": folder / f"{step:08d}_optimizer.pt"}


def saved_steps(folder: str | Path) -> list[int]:
    """Step numbers that have an optimizer file (complete steps), ascending."""
    return [step for step, _ in checkpoint.numbered(folder, OPTIMIZER_FILE)]


def ema_state(ema: AveragedModel) -> dict:
    """The whole AveragedModel: weights and buffers of the average, and how many updates it has seen (the first
    update copies instead of averaging, so a resume that lost `n_averaged` would restart the average)."""
    return {"model": ema.module.state_dict(), "n_averaged": ema.n_averaged.detach().clone()}


def load_ema_state(ema: AveragedModel, state: dict) -> None:
    ema.module.load_state_dict(state["model"])
    ema.n_averaged.copy_(state["n_averaged"])


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files of saves that were interrupted (kill -9 mid-write). Call at start-up on the
    main rank, before this run saves anything."""
    folder = Path(folder)
    stale = [path for path in folder.iterdir() if TEMP_FILE.fullmatch(path.name)] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("Removed %s (left by an interrupted save).", path)
    return stale


class CheckpointWriter:
    """Writes a step's files and prunes old steps.

    Pruning keeps the newest `keep_last` (0 = all) of the steps it may delete: the steps this run wrote and the
    steps up to the one it resumed from (the run it continues). It never deletes the step just written (the one
    latest.pt names), nor a step newer than the resumed one that this run did not write: those belong to
    another timeline (a resume from an earlier step), or are the truncated files a resume passed over.
    """

    def __init__(self, folder: str | Path, keep_last: int, resumed_step: int | None = None):
        self.folder, self.keep_last = Path(folder), keep_last
        earlier = [step for step in saved_steps(folder) if resumed_step is not None and step <= resumed_step]
        self.prunable = set(earlier)

    def save(self, step: int, model_config: dict, model_state: dict, ema: AveragedModel | None,
             training_state: dict) -> None:
        paths = step_paths(self.folder, step)
        checkpoint.save(paths["model"], {"model_config": model_config, "model": model_state})
        if ema is not None:
            checkpoint.save(paths["ema"], {"model_config": model_config, **ema_state(ema)})
        checkpoint.save(paths["optimizer"], {"model_config": model_config, "step": step, **training_state})
        checkpoint.save(self.folder / POINTER, {"model_config": model_config, "step": step})
        self.prunable.add(step)
        self.prune(keep=step)

    def prune(self, keep: int) -> list[int]:
        if self.keep_last <= 0:
            return []
        removed = [step for step in sorted(self.prunable)[:-self.keep_last] if step != keep]
        for step in removed:
            for path in reversed(step_paths(self.folder, step).values()):  # the optimizer file (the marker) first
                path.unlink(missing_ok=True)
            self.prunable.discard(step)
        return removed
