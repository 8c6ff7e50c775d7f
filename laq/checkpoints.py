"""LAQ's checkpoint files: names, finding the one to resume from, pruning, and starting from other weights.

In `RUN/checkpoints/`:
    step_NNNNNNN.pt     every training.checkpoint_every_steps (resumable mid-epoch); the newest keep_last are kept
    laq-epoch{N}.ckpt   after every training.checkpoint_every_epochs-th epoch (the guide's name); never pruned
    last.pt             end of training, or on preemption (SIGTERM / SIGUSR1)
All three hold the full training state (model, optimizer, scaler, guard, step, epoch, batches_done, RNG of every
rank, resolved config) and load with weights_only=True.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Iterable, Sequence

import torch

from common import checkpoint
from laq.lapa import is_lapa_state_dict, load_lapa_weights, read_lapa_state_dict

log = logging.getLogger(__name__)

STEP_PATTERN = r"step_(\d+)\.pt"
EPOCH_PATTERN = r"laq-epoch(\d+)\.ckpt"
NO_RESUME = ("", "none", "null", "false")
LATEST = ("latest", "auto", "last")


def step_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def epoch_name(epoch: int) -> str:
    """laq-epoch{N}.ckpt, N = epochs completed (the guide resumes from laq-epoch10.ckpt)."""
    return f"laq-epoch{epoch}.ckpt"


class CheckpointRefused(checkpoint.CheckpointError):
    """torch.load(weights_only=True) refused the file: it holds pickled objects other than tensors and containers
    (a foreign or tampered checkpoint). Never skipped silently: the run stops and says what was refused."""


def load(path: str | os.PathLike) -> dict:
    """A checkpoint (weights_only=True). CheckpointRefused when the file needs arbitrary unpickling (the message
    quotes what torch refused), CheckpointError when it is missing, truncated or corrupt."""
    try:
        return checkpoint.load(path)
    except checkpoint.CheckpointError as exc:
        if isinstance(exc.__cause__, pickle.UnpicklingError):
            refused = str(exc.__cause__).strip().splitlines()
            detail = next((line.strip() for line in refused if "GLOBAL" in line or "Unsupported" in line),
                          refused[0] if refused else "")
            raise CheckpointRefused(
                f"Refusing {path}: torch.load(weights_only=True) rejected it ({detail}). It is not a checkpoint this "
                f"code wrote (those hold only tensors and plain containers); if you trust its source, convert it to "
                f"a state_dict first.") from exc
        raise


def _peek_step(path: Path) -> int:
    """The step a checkpoint holds, read through a memory map (the tensors are not loaded)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("step", -1))


def newest_valid(paths: Iterable[Path]) -> tuple[Path | None, dict | None]:
    """The loadable checkpoint with the highest step among `paths`; truncated or corrupt ones are reported and
    passed over, a refused one stops everything (CheckpointRefused)."""
    steps = []
    for path in paths:
        try:
            steps.append((_peek_step(path), path))
        except pickle.UnpicklingError:
            load(path)  # raises CheckpointRefused, quoting what was refused
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            log.warning("Checkpoint %s is unreadable (truncated or corrupt?): %s; passing over it.", path, exc)
    for _, path in sorted(steps, key=lambda item: -item[0]):
        try:
            return path, load(path)
        except CheckpointRefused:
            raise
        except checkpoint.CheckpointError as exc:
            log.warning("%s; passing over it.", exc)
    return None, None


def candidates(ckpt_dir: Path) -> list[Path]:
    """last.pt, step_*.pt and laq-epoch*.ckpt in `ckpt_dir`, the newest numbers first."""
    files = [path for _, path in reversed(checkpoint.numbered(ckpt_dir, STEP_PATTERN))]
    files += [path for _, path in reversed(checkpoint.numbered(ckpt_dir, EPOCH_PATTERN))]
    last = ckpt_dir / "last.pt"
    return ([last] if last.is_file() else []) + files


def find_resume(spec, ckpt_dir: Path, search_dirs: Sequence[Path] = ()) -> tuple[Path | None, dict | None]:
    """(path, state) for trainer.resume_from_checkpoint.

    None / "" / none / null / false: a fresh start. latest / auto / last: the checkpoint with the highest step among
    last.pt, step_*.pt and laq-epoch*.ckpt of this run (truncated ones passed over; none yet: a fresh start).
    Otherwise a file: absolute, relative to the working directory, or relative to one of `search_dirs` (this run's
    folder, then earlier runs of the experiment), so the guide's `./checkpoints/laq-epoch10.ckpt` resolves; a file
    found nowhere is an error listing where it looked.
    """
    if spec is None or str(spec).strip().lower() in NO_RESUME:
        return None, None
    if str(spec).strip().lower() in LATEST:
        path, state = newest_valid(candidates(ckpt_dir))
        if path is None:
            log.info("No checkpoint in %s yet; starting from scratch.", ckpt_dir)
        return path, state
    wanted = Path(str(spec)).expanduser()
    looked = [wanted if wanted.is_absolute() else Path.cwd() / wanted]
    if not wanted.is_absolute():
        looked += [Path(folder) / wanted for folder in search_dirs]
    for path in looked:
        if path.is_file():
            return path, load(path)
    existing = sorted(str(p) for folder in {ckpt_dir, *(Path(f) / "checkpoints" for f in search_dirs)}
                      for p in candidates(Path(folder)))[:10]
    raise FileNotFoundError(f"trainer.resume_from_checkpoint={spec}: no such file (looked at "
                            f"{', '.join(map(str, looked))}). Checkpoints found: {existing or 'none'}; or use "
                            f"trainer.resume_from_checkpoint=latest with the run's hydra.run.dir.")


def earlier_runs(run_dir: Path) -> list[Path]:
    """Sibling run folders of `run_dir` (runs/laq/<experiment>/<time>), the newest first."""
    parent = run_dir.parent
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if p.is_dir() and p != run_dir), key=lambda p: p.name, reverse=True)


class StepPruner:
    """Keeps the newest `keep_last` step_*.pt files, deleting only what is safe to delete: files this run wrote and
    files older than the checkpoint it resumed from (superseded by it). Never the file just written, never the
    resumed one, never anything newer than the resumed one that this run did not write (a truncated or foreign
    newer file is left for a person to look at, not trusted and not deleted)."""

    def __init__(self, ckpt_dir: Path, keep_last: int, resumed: Path | None = None, resumed_step: int = -1):
        self.ckpt_dir, self.keep_last = ckpt_dir, int(keep_last)
        self.resumed = resumed.resolve() if resumed is not None else None
        self.written: list[Path] = []
        self.superseded = [path for step, path in checkpoint.numbered(ckpt_dir, STEP_PATTERN) if step < resumed_step]

    def saved(self, path: Path) -> list[Path]:
        """Record a step file just written and prune; returns the removed paths."""
        self.written.append(path)
        if self.keep_last <= 0:
            return []
        regex = re.compile(STEP_PATTERN)
        pool = sorted(set(self.superseded + self.written), key=lambda p: int(regex.fullmatch(p.name).group(1)))
        keep = {path.resolve()} | ({self.resumed} if self.resumed else set())
        removed = [p for p in pool[:-self.keep_last] if p.resolve() not in keep]
        for p in removed:
            p.unlink(missing_ok=True)
        self.written = [p for p in self.written if p not in removed]
        self.superseded = [p for p in self.superseded if p not in removed]
        return removed


def load_initial_weights(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """model.init_from: copy the weights of a LAPA checkpoint (its key names) or of one of ours into `model` (not
    the optimizer, step or RNG). Returns what was loaded, for the log; mismatches are errors listing the keys."""
    state = load(path)
    weights = state["model"] if isinstance(state.get("model"), dict) else state
    if is_lapa_state_dict(weights):
        load_lapa_weights(model, read_lapa_state_dict(weights), f"model.init_from={path}")
        return "LAPA weights"
    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"model.init_from={path} does not fit the model: missing keys {result.missing_keys}, "
                         f"unknown keys {result.unexpected_keys}")
    return "LAQ weights"
