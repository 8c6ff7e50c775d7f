"""LAQ's checkpoint files: names, which one to resume from, and starting from other weights.

In `RUN/checkpoints/`:
    step_NNNNNNN.pt     every training.checkpoint_every_steps (resumable mid-epoch); the newest keep_last are kept
                        (common.checkpoint.prune: only this run's files, never the newest, nor one above the resumed)
    laq-epoch{N}.ckpt   after every training.checkpoint_every_epochs-th epoch (the guide's name); never pruned
    last.pt             end of training, or on preemption (SIGTERM / SIGUSR1)
All three hold the full training state (model, optimizer, lr schedule, scaler, guard, step, epoch, batches_done,
RNG of every rank, resolved config) and load with weights_only=True (common.checkpoint).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch

from common import checkpoint
from laq.lapa import is_lapa_state_dict, load_lapa_weights, read_lapa_state_dict

log = logging.getLogger(__name__)

STEP_PATTERN = r"step_(\d+)\.pt"
EPOCH_PATTERN = r"laq-epoch(\d+)\.ckpt"
# Keys whose change between a checkpoint and the resumed run would break an exact continuation.
EXACT_KEYS = ("seed", "data", "model", "training.optimizer", "training.lr_schedule", "training.warmup_steps",
              "training.grad_clip", "training.precision", "training.deterministic")
# Keys that differ by design between a run and its continuation (where it is, how long, how often it reports).
RESUME_IGNORES = ("trainer.*", "training.max_steps", "training.epochs", "model.init_from", "data.folder",
                  "data.num_workers", "data.prefetch_factor", "data.pin_memory", "logging.*", "experiment_name",
                  "training.val_*", "training.checkpoint_*", "training.keep_last", "training.profiler.*")


def step_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def epoch_name(epoch: int) -> str:
    """laq-epoch{N}.ckpt, N = epochs completed (the guide resumes from laq-epoch10.ckpt)."""
    return f"laq-epoch{epoch}.ckpt"


def _locate(spec: str, search_dirs: Sequence[Path], ckpt_dir: Path) -> Path:
    """A relative checkpoint path that is not under the working directory, looked up under each of `search_dirs`
    (this run's folder, then earlier runs of the experiment), so the guide's `./checkpoints/laq-epoch10.ckpt`
    resolves; found nowhere: an error listing where it looked and which checkpoints exist."""
    wanted = Path(spec).expanduser()
    if wanted.is_absolute() or wanted.exists():
        return wanted
    looked = [Path.cwd() / wanted] + [Path(folder) / wanted for folder in search_dirs]
    for path in looked[1:]:
        if path.exists():
            return path
    existing = sorted(str(p) for folder in {ckpt_dir, *(Path(f) / "checkpoints" for f in search_dirs)}
                      for p in Path(folder).glob("*") if p.suffix in (".pt", ".ckpt"))[:10]
    raise checkpoint.CheckpointError(
        f"trainer.resume_from_checkpoint={spec}: no such file (looked at {', '.join(map(str, looked))}). "
        f"Checkpoints found: {existing or 'none'}; or resume with trainer.resume_from_checkpoint=latest and the "
        f"run's hydra.run.dir.")


def find_resume(spec, ckpt_dir: Path, search_dirs: Sequence[Path] = ()) -> tuple[Path | None, dict | None]:
    """(path, state) for trainer.resume_from_checkpoint, through common.checkpoint.resolve_resume.

    none / null / false: a fresh start. latest: the checkpoint with the highest step among last.pt, step_*.pt and
    laq-epoch*.ckpt of this run (truncated ones passed over; none yet: a fresh start). A step number: that
    step_*.pt. A folder: its newest. A file: absolute, relative to the working directory, or relative to one of
    `search_dirs`. A file weights_only refuses stops the run (CheckpointRefused), naming what was refused.
    """
    kind, value = checkpoint.parse_resume_spec(spec)
    if kind == "path":
        spec = str(_locate(str(value), search_dirs, ckpt_dir))
    epochs = [path.name for _, path in checkpoint.numbered(ckpt_dir, EPOCH_PATTERN)]
    return checkpoint.resolve_resume(spec, ckpt_dir, STEP_PATTERN, also=("last.pt", *epochs))


def earlier_runs(run_dir: Path) -> list[Path]:
    """Sibling run folders of `run_dir` (runs/laq/<experiment>/<time>), the newest first."""
    parent = run_dir.parent
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if p.is_dir() and p != run_dir), key=lambda p: p.name, reverse=True)


def load_initial_weights(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """model.init_from: copy the weights of a LAPA checkpoint (its key names) or of one of ours into `model` (not
    the optimizer, step or RNG). Returns what was loaded, for the log; mismatches are errors listing the keys."""
    state = checkpoint.load(path)
    weights = state["model"] if isinstance(state.get("model"), dict) else state
    if is_lapa_state_dict(weights):
        load_lapa_weights(model, read_lapa_state_dict(weights), f"model.init_from={path}")
        return "LAPA weights"
    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"model.init_from={path} does not fit the model: missing keys {result.missing_keys}, "
                         f"unknown keys {result.unexpected_keys}")
    return "LAQ weights"
