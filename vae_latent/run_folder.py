"""Which folder a run writes to, and the rule that keeps two runs from mixing in one folder.

- `logging_params.name` set: the run folder is save_dir/name (resume with `--resume auto` there).
- `logging_params.name: null`: every run makes a new time-stamped folder save_dir/VanillaVAE_<date>_<time>; it
  cannot be resumed "latest" (which folder?), only from an explicit checkpoint path.
- A fresh start in a folder that already holds checkpoints is refused: its keep-last pruning and `--resume auto`
  would otherwise mix the new run's checkpoints with the old run's (higher) step numbers.
"""
from __future__ import annotations

import time
from pathlib import Path

from common import dist, run_checks
from common.config import ConfigError

RESUME_LATEST = ("latest", "auto", "last")
STEP_PATTERN = r"step_(\d+)\.pt"
CHECKPOINT_GLOBS = ("step_*.pt", "vae_final.pt", "vae_best.pt")


def resolve_run_dir(config: dict, resume: str | None) -> Path:
    """The run folder every rank writes to (rank 0's time stamp when the name is null)."""
    log_cfg = config["logging_params"]
    if log_cfg["name"] is not None:
        return Path(log_cfg["save_dir"]) / str(log_cfg["name"])
    if resume is not None and str(resume).lower() in RESUME_LATEST:
        raise ConfigError(f"--resume {resume} needs a run folder, but logging_params.name is null (a new "
                          "time-stamped folder per run): set logging_params.name to the folder to continue, or "
                          "pass --resume PATH/TO/checkpoints/step_XXXXXXXX.pt")
    stamp = dist.broadcast_object(time.strftime("%Y%m%d_%H%M%S"))  # every rank uses rank 0's folder
    return Path(log_cfg["save_dir"]) / f"VanillaVAE_{stamp}"


def check_fresh_run_folder(ckpt_dir: Path) -> None:
    """Raise common.run_checks.RunFolderInUse when a fresh run would write into `ckpt_dir` while it holds
    checkpoints of an earlier run (the common check, with this project's way to continue or start elsewhere)."""
    try:
        run_checks.check_fresh_run_folder(ckpt_dir, resuming=False, globs=CHECKPOINT_GLOBS)
    except run_checks.RunFolderInUse as exc:
        raise run_checks.RunFolderInUse(
            f"{exc} Continue that run with --resume auto, or start a new one elsewhere: "
            "--set logging_params.name=NEW_NAME (or logging_params.name=null for a time-stamped folder).") from None
