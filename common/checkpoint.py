"""Atomic checkpoints that hold the full training state, and finding the newest valid one.

A checkpoint is a dict of tensors and plain containers (no pickled classes), so it loads with
`torch.load(weights_only=True)`. RNG states are stored as tensors for the same reason.
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    pass


def save(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` to `path` atomically: temp file in the same folder, fsync, os.replace.

    A reader (or a resumed run) sees either the old file or the complete new one, never a partial write.
    Call it on the main rank only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save`; raises CheckpointError naming the file if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        # torch reports truncation as RuntimeError, a disallowed pickled class as UnpicklingError
        raise CheckpointError(f"Checkpoint {path} is unreadable (truncated or corrupt?): {exc}") from exc


def rng_state() -> dict:
    """Python, numpy, torch and CUDA RNG states as tensors (weights_only-loadable)."""
    version, py_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def numbered(folder: str | os.PathLike, pattern: str = r"step_(\d+)\.pt") -> list[tuple[int, Path]]:
    """Files in `folder` whose names match `pattern` (one integer group), sorted by that integer."""
    regex = re.compile(pattern)
    found = []
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.iterdir():
            match = regex.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return sorted(found)


def load_latest_valid(folder: str | os.PathLike, pattern: str = r"step_(\d+)\.pt",
                      map_location: str | torch.device = "cpu") -> tuple[Path | None, dict | None]:
    """Newest loadable numbered checkpoint; a truncated or corrupt newer one is reported and passed over."""
    for _, path in reversed(numbered(folder, pattern)):
        try:
            return path, load(path, map_location)
        except CheckpointError as exc:
            log.warning("%s; falling back to the previous checkpoint.", exc)
    return None, None


def prune(folder: str | os.PathLike, keep_last: int, pattern: str = r"step_(\d+)\.pt") -> list[Path]:
    """Delete all but the newest `keep_last` numbered checkpoints (keep_last <= 0 keeps all). Returns the removed."""
    if keep_last <= 0:
        return []
    removed = [path for _, path in numbered(folder, pattern)[:-keep_last]]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def resolve_resume(spec: str | None, folder: str | os.PathLike, pattern: str = r"step_(\d+)\.pt",
                   map_location: str | torch.device = "cpu") -> tuple[Path | None, dict | None]:
    """Turn a --resume value into (path, state).

    None / "" / "none": start fresh. "latest" or "auto": the newest valid checkpoint in `folder` (fresh start
    if there is none). Anything else is a path that must exist.
    """
    if spec is None or str(spec).lower() in ("", "none", "null", "false"):
        return None, None
    if str(spec).lower() in ("latest", "auto", "last"):
        path, state = load_latest_valid(folder, pattern, map_location)
        if path is None:
            log.info("No checkpoint in %s yet; starting from scratch.", folder)
        return path, state
    return Path(spec), load(spec, map_location)
