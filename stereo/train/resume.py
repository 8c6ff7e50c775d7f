"""`--checkpoint`: which saved step a run continues from, and with which settings.

Values (the meanings of common.checkpoint.resolve_resume):
  none / '' / null / false   fresh start
  latest / auto / last       the newest *complete and readable* step in WORKSPACE/checkpoint; a truncated or
                             corrupt newer step is reported and passed over; nothing saved yet: fresh start
  a step number              that step in WORKSPACE/checkpoint (missing: an error listing the steps present)
  a folder                   its newest complete and readable step
  a file                     latest.pt (the pointer) -> the step it names; {step:08d}.pt, _optimizer.pt or
                             _ema.pt with the step's optimizer file beside it -> that step; any other .pt ->
                             weights only ("model" key or a bare state dict), starting at step 0

A resumed run takes the settings of the run it continues (config and flags) unless they are given again;
changes that break exactness are refused unless allowed (check_resume_config).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from common import checkpoint
from common.checkpoint import CheckpointError
from stereo.train.checkpoints import POINTER, STEP_FILE, saved_steps, step_paths

log = logging.getLogger(__name__)
NO_RESUME = ("", "none", "null", "false")
LATEST = ("latest", "auto", "last")


class ConfigChangeError(ValueError):
    pass


@dataclass
class ResumePoint:
    path: Path              # the file that was resolved (a step's model file, or the weights file)
    step: int
    model: dict             # model weights
    ema: dict | None        # {"model", "n_averaged"} (stereo.train.checkpoints.ema_state), if saved
    training: dict | None   # the step's optimizer file; None: weights only, the run starts at step 0


def resolve_checkpoint(spec: str | int | None, folder: str | Path) -> ResumePoint | None:
    """The --checkpoint value -> what to load (see the module docstring), or None for a fresh start."""
    if spec is None or str(spec).strip().lower() in NO_RESUME:
        return None
    text, folder = str(spec).strip(), Path(folder)
    if text.lower() in LATEST:
        point = newest_valid_step(folder)
        if point is None:
            log.info("No checkpoint in %s yet: starting from scratch.", folder)
        return point
    if text.isdigit():
        return load_step(folder, int(text))
    path = Path(text)
    if path.is_dir():
        point = newest_valid_step(path)
        if point is None:
            raise FileNotFoundError(f"--checkpoint {text}: the folder holds no complete checkpoint")
        return point
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {text}: no such file or folder (expected 'latest', a step number, "
                                f"a checkpoint folder or a .pt file)")
    match = re.fullmatch(r"(\d{8})(?:_optimizer|_ema)?\.pt", path.name)
    if match and step_paths(path.parent, int(match.group(1)))["optimizer"].is_file():
        return load_step(path.parent, int(match.group(1)))
    state = checkpoint.load(path)
    if path.name == POINTER or ("step" in state and "model" not in state and "optimizer" not in state):
        log.info("%s points to step %d.", path, int(state["step"]))
        return load_step(path.parent, int(state["step"]))
    return ResumePoint(path=path, step=0, model=state.get("model", state), ema=None, training=None)


def load_step(folder: Path, step: int) -> ResumePoint:
    """A saved step's files; raises FileNotFoundError (listing the steps present) or CheckpointError."""
    paths = step_paths(folder, step)
    missing = [str(paths[key]) for key in ("model", "optimizer") if not paths[key].is_file()]
    if missing:
        raise FileNotFoundError(f"Checkpoint of step {step} is incomplete: missing {', '.join(missing)}. "
                                f"Steps present in {folder}: {saved_steps(folder) or 'none'}")
    ema = checkpoint.load(paths["ema"]) if paths["ema"].is_file() else None
    return ResumePoint(path=paths["model"], step=step, model=checkpoint.load(paths["model"])["model"], ema=ema,
                       training=checkpoint.load(paths["optimizer"]))


def newest_valid_step(folder: Path) -> ResumePoint | None:
    """The newest step whose files all load; unreadable or incomplete newer steps are reported and passed over."""
    complete = saved_steps(folder)
    for step, _ in reversed(checkpoint.numbered(folder, STEP_FILE)):
        if step > (complete[-1] if complete else -1):
            log.warning("Step %d in %s has no optimizer file (its save was interrupted): passed over.", step, folder)
    for step in reversed(complete):
        try:
            return load_step(folder, step)
        except (CheckpointError, FileNotFoundError) as exc:
            log.warning("%s; falling back to the previous step.", exc)
    return None


def run_settings(given: dict, defaults: dict, saved: dict | None) -> dict:
    """Each run flag: as given on the command line (not None), else as the resumed run had it, else the default."""
    saved = saved or {}
    return {key: given[key] if given.get(key) is not None else saved.get(key, default)
            for key, default in defaults.items()}


def exact_resume_keys(config: dict) -> tuple[str, ...]:
    """The settings (dotted, over {"config", "settings", "world_size"}) whose change breaks exact resume: what the
    model, the data order, the augmentation, the loss and the optimisation see. Logging, saving and validation
    settings are free to change."""
    keys = ("config.model", "config.data.datasets", "config.data.image_sizes", "config.data.max_disparity",
            "config.data.stereo_augmentation", "config.loss", "config.optimizer", "config.lr_scheduler",
            "config.train.clip_grad", "config.train.ema_decay", "config.train.mixed_precision_dtype",
            "config.train.freeze_bn", "settings.batch_size_forward", "settings.gradient_accumulation_steps",
            "settings.seed", "settings.enable_ema", "settings.enable_mixed_precision", "settings.deterministic",
            "world_size")
    if config["lr_scheduler"]["kind"] == "cosine":  # the cosine schedule is stretched over --num_iterations
        keys += ("settings.num_iterations",)
    return keys


def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: tree}


def check_resume_config(saved: dict, current: dict, exact_keys, allow_change: bool = False) -> list[str]:
    """Compare the resumed run's settings with this run's. A changed key under one of `exact_keys` (dotted
    prefixes) breaks exact resume: ConfigChangeError naming each (old -> new) unless `allow_change`. Other
    changes are logged. Returns the changed keys."""
    old, new = _flatten(saved), _flatten(current)
    changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    exact = [key for key in changed if any(key == p or key.startswith(p + ".") for p in exact_keys)]
    listing = lambda keys: "; ".join(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys)
    if exact and not allow_change:
        raise ConfigChangeError(f"Resuming with changed settings that break exact resume: {listing(exact)}. Resume "
                                "with the run's own settings (omit --config and the changed flags), or pass "
                                "--allow_config_change true to continue with the new ones.")
    if exact:
        log.warning("Continuing with changed settings (--allow_config_change): %s", listing(exact))
    harmless = [key for key in changed if key not in exact]
    if harmless:
        log.info("Changed settings that do not affect the result: %s", listing(harmless))
    return changed


def check_fresh_run_folder(folder: str | Path, resuming: bool) -> None:
    """A fresh run must not write into a folder that holds another run's checkpoints (the runs would mix)."""
    steps = sorted({step for step, _ in checkpoint.numbered(folder, STEP_FILE)} | set(saved_steps(folder)))
    if steps and not resuming:
        raise FileExistsError(f"{folder} already holds checkpoints of another run (steps {steps}): pass "
                              f"--checkpoint latest to continue that run, or choose a new --workspace.")
