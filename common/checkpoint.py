"""Atomic checkpoints that hold the full training state, finding the one to resume from, and safe housekeeping.

A checkpoint is a dict of tensors and plain containers (no pickled classes), so it loads with
`torch.load(weights_only=True)`. RNG states are stored as tensors for the same reason.

The pieces a training script calls, in order:
    check_fresh_run_folder(run_dir, resuming=...)      # a fresh run never mixes with an old one
    remove_stale_temp_files(ckpt_dir)                   # left-overs of a save that was killed
    path, state = resolve_resume(args.resume, ckpt_dir)  # none | latest | step number | folder | file
    check_resume_config(state["config"], config, exact_keys=(...), allow_change=args.allow_config_change)
    restore_rng_states(state["rng"])
    ...
    state["rng"] = gather_rng_states()                  # every rank calls it (a collective under DDP)
    save(ckpt_dir / f"step_{step:08d}.pt", state)       # main rank
    prune(ckpt_dir, keep_last=3)                        # main rank: only this run's files, never the newest
The run-folder and config checks live in `common.run_checks` and are re-exported here.
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import re
import secrets
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from common import dist
from common.run_checks import ConfigChangeError, RunFolderInUse, check_fresh_run_folder, check_resume_config

log = logging.getLogger(__name__)

STEP_PATTERN = r"step_(\d+)\.pt"
FRESH_WORDS = ("", "none", "null", "false", "no")
LATEST_WORDS = ("latest", "auto", "last")
_TEMP_FILE = re.compile(r"\..+\.[A-Za-z0-9_]{6,}\.tmp")  # what `save` writes before the rename
_POINTER_MAX_BYTES = 4096

__all__ = ["CheckpointError", "CheckpointRefused", "ConfigChangeError", "RunFolderInUse", "STEP_PATTERN", "save",
           "load", "remove_stale_temp_files", "rng_state", "set_rng_state", "gather_rng_states",
           "restore_rng_states", "numbered", "load_latest_valid", "prune", "parse_resume_spec", "resolve_resume",
           "check_resume_config", "check_fresh_run_folder"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or corrupt; the message names the file."""


class CheckpointRefused(CheckpointError):
    """`torch.load(weights_only=True)` refused the file: it pickles a class or function (named in the message).

    Not a damaged file: a foreign or malicious one, or one written by code that pickled objects. Never fall back
    to a fresh start on this error.
    """


# This process's record of the checkpoints it wrote (`save`) and resumed from (`resolve_resume`), which is what
# `prune` may delete: files of this run, never another run's, never one newer than the resumed checkpoint.
_written: dict[Path, float] = {}
_resumed: dict[Path, Path] = {}  # folder -> the checkpoint resolve_resume returned for it


# ----------------------------------------------------------------------------------------------- files
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` to `path` atomically: temp file in the same folder, fsync, os.replace.

    A reader (or a resumed run) sees either the old file or the complete new one, never a partial write. The file
    gets the permissions of any newly created file (0666 minus the umask, usually group- and world-readable),
    unlike `tempfile.mkstemp`'s 0600. Call it on the main rank only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the mode passes through the umask
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    _written[path.absolute()] = time.monotonic()
    return path


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save` (`weights_only=True`).

    Raises CheckpointError naming the file when it is missing, truncated or corrupt, and its subclass
    CheckpointRefused when the file is intact but pickles something weights_only refuses (the global is named).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            found = _REFUSED_GLOBAL.search(str(exc))
            what = f"the global {found.group(1)}" if found else "a pickled object"
            raise CheckpointRefused(
                f"Checkpoint {path} was refused by torch.load(weights_only=True): it holds {what}, which a "
                f"checkpoint of this code never does. It is a foreign or tampered file (or from code that pickled "
                f"objects); not loading it. If you trust it, convert it once with torch.load(weights_only=False) "
                f"and save its tensors.") from exc
        raise CheckpointError(f"Checkpoint {path} is unreadable (truncated or corrupt?): {exc}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        # torch reports a truncated zip as RuntimeError; a file that is no checkpoint at all as IndexError & co.
        raise CheckpointError(f"Checkpoint {path} is unreadable (truncated or corrupt?): {exc}") from exc


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the `.NAME.XXXXXXXX.tmp` files an interrupted `save` left in `folder`; returns them.

    Call it on the main rank at start-up, before this run saves anything (a save in progress has such a file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if p.is_file() and _TEMP_FILE.fullmatch(p.name))
    for path in stale:
        path.unlink(missing_ok=True)
        log.warning("Removed %s, the temporary file of a checkpoint save that was interrupted.", path)
    return stale


# ----------------------------------------------------------------------------------------------- RNG states
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


def gather_rng_states(generators: Mapping[str, torch.Generator] | None = None) -> list[dict]:
    """Every rank's RNG state, as a list indexed by rank (one entry without a process group).

    Each entry is `rng_state()` plus, under "generators", the state of each named torch.Generator of that rank
    (e.g. {"noise": noise_generator, "loader": loader.generator}). Under DDP this is a collective: every rank must
    call it at the same point, also the ranks that do not write the checkpoint.
    """
    own = rng_state()
    if generators:
        own["generators"] = {name: generator.get_state() for name, generator in generators.items()}
    if not dist.is_initialized():
        return [own]
    states: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, own)
    return states


def restore_rng_states(states: list[dict] | dict, generators: Mapping[str, torch.Generator] | None = None,
                       rank: int | None = None) -> None:
    """Restore this rank's entry of what `gather_rng_states` saved (and the named generators' states).

    A checkpoint written with another number of ranks cannot continue every random stream: rank r then takes entry
    r % saved and a warning says so. A single dict (a checkpoint of one process) is accepted too.
    """
    states = [states] if isinstance(states, Mapping) else list(states)
    rank = (torch.distributed.get_rank() if dist.is_initialized() else 0) if rank is None else rank
    world = torch.distributed.get_world_size() if dist.is_initialized() else 1
    if len(states) != world:
        log.warning("The checkpoint holds RNG states of %d rank(s), this run has %d: rank %d continues the stream "
                    "of saved rank %d, so random draws differ from an uninterrupted run.",
                    len(states), world, rank, rank % len(states))
    state = states[rank % len(states)]
    set_rng_state(state)
    saved_generators = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in saved_generators:
            raise CheckpointError(f"The checkpoint's RNG states hold no generator {name!r} "
                                  f"(it has: {', '.join(saved_generators) or 'none'})")
        generator.set_state(saved_generators[name])


# ----------------------------------------------------------------------------------------------- numbered files
def numbered(folder: str | os.PathLike, pattern: str = STEP_PATTERN) -> list[tuple[int, Path]]:
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


def load_latest_valid(folder: str | os.PathLike, pattern: str = STEP_PATTERN,
                      map_location: str | torch.device = "cpu") -> tuple[Path | None, dict | None]:
    """Newest loadable numbered checkpoint; a truncated or corrupt newer one is reported and passed over.

    A refused file (CheckpointRefused) is not passed over: it is raised.
    """
    for _, path in reversed(numbered(folder, pattern)):
        try:
            return path, load(path, map_location)
        except CheckpointRefused:
            raise
        except CheckpointError as exc:
            log.warning("%s; falling back to the previous checkpoint.", exc)
    return None, None


def prune(folder: str | os.PathLike, keep_last: int, pattern: str = STEP_PATTERN,
          keep: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Delete all but the newest `keep_last` of this run's numbered checkpoints in `folder`; returns the removed.

    keep_last <= 0 keeps all. "This run's" checkpoints (the only ones ever deleted, as in timm's CheckpointSaver):
    the files this process wrote with `save`, and, after a resume, the numbered files at or below the one
    `resolve_resume` returned for `folder` (the run being continued). Never deleted: the files in `keep` (pass the
    one just written and, if you want it kept, the one resumed from), the newest file this process wrote there,
    and every file this run did not write: one numbered above the resumed checkpoint (a truncated newest file that
    was passed over, or another run's) stays.
    """
    if keep_last <= 0:
        return []
    folder = Path(folder).absolute()
    files = numbered(folder, pattern)
    written_here = [p for _, p in files if p.absolute() in _written]
    protected = {Path(p).absolute() for p in keep}
    if written_here:
        protected.add(max(written_here, key=lambda p: _written[p.absolute()]).absolute())
    resumed = _resumed.get(folder)
    resumed_number = None
    if resumed is not None:
        match = re.fullmatch(pattern, resumed.name)
        resumed_number = int(match.group(1)) if match else None
    ours = [p for number, p in files
            if p.absolute() in _written or (resumed_number is not None and number <= resumed_number)]
    removed = [p for p in ours[:-keep_last] if p.absolute() not in protected]
    for path in removed:
        path.unlink(missing_ok=True)
        _written.pop(path.absolute(), None)
    return removed


# ----------------------------------------------------------------------------------------------- resume
def parse_resume_spec(spec: str | os.PathLike | None) -> tuple[str, int | Path | None]:
    """What a --resume value means, the same in every project:
    ("fresh", None) for None / "" / none / null / false / no; ("latest", None) for latest / auto / last;
    ("step", N) for a digit string; ("path", Path) for anything else (a folder or a file).
    For projects whose checkpoint is several files (stereo) and that resolve the files themselves."""
    text = "" if spec is None else str(spec).strip()
    if text.lower() in FRESH_WORDS:
        return "fresh", None
    if text.lower() in LATEST_WORDS:
        return "latest", None
    if text.isdigit():
        return "step", int(text)
    return "path", Path(text)


def _newest_valid(folder: Path, pattern: str | None, also: Iterable[str], step_key: str,
                  map_location) -> tuple[Path | None, dict | None]:
    """The newest valid checkpoint among the numbered files and the `also` names (compared by state[step_key])."""
    best: tuple[Path | None, dict | None] = (None, None)
    for name in also:
        path = folder / name
        if path.is_file():
            try:
                state = load(path, map_location)
            except CheckpointRefused:
                raise
            except CheckpointError as exc:
                log.warning("%s; ignoring it.", exc)
                continue
            if best[1] is None or state.get(step_key, -1) > best[1].get(step_key, -1):
                best = (path, state)
    if pattern is not None:
        path, state = load_latest_valid(folder, pattern, map_location)
        if state is not None and (best[1] is None or state.get(step_key, -1) > best[1].get(step_key, -1)):
            best = (path, state)
    return best


def _follow_pointer(path: Path) -> Path:
    """A small text file naming a checkpoint (relative to its folder) -> that checkpoint; any other file: itself."""
    if path.stat().st_size > _POINTER_MAX_BYTES:
        return path
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        return path  # a (small) binary checkpoint
    if not text or "\n" in text or "\x00" in text:
        return path
    target = path.parent / text
    if not target.is_file():
        raise CheckpointError(f"Checkpoint pointer {path} names {text!r}, which does not exist ({target})")
    return target


def resolve_resume(spec: str | os.PathLike | None, folder: str | os.PathLike | None,
                   pattern: str | None = STEP_PATTERN, map_location: str | torch.device = "cpu",
                   also: Iterable[str] = (), step_key: str = "step") -> tuple[Path | None, dict | None]:
    """Turn a --resume value into (path, state); (None, None) means a fresh start. One meaning everywhere:

    - None, "", none, null, false, no: fresh start.
    - latest, auto, last: the newest *valid* checkpoint in `folder` (truncated or corrupt newer ones are reported
      and passed over); a fresh start when `folder` has none yet (the first job of a requeued series), an error
      when `folder` is None (an auto-named run folder: there is nothing to find).
    - a digit string N: the checkpoint numbered N in `folder` (error listing the numbers present if absent).
    - a folder: its newest valid checkpoint (error if it has none).
    - a file: that file; a small text file naming a checkpoint beside it (a pointer such as `latest`) is followed.

    pattern: file names of the numbered checkpoints (one integer group; None: no numbered files);
    also: other names in the folder that take part in "latest" (e.g. "last.pt"), compared by state[step_key].
    Raises CheckpointError (CheckpointRefused for a file weights_only refuses) naming the file.
    """
    kind, value = parse_resume_spec(spec)
    if kind == "fresh":
        return None, None
    if kind in ("latest", "step") and folder is None:
        raise CheckpointError(f"resume {spec!r} needs a run folder: give the run's output folder (the auto-named "
                              f"folder of a new run holds no checkpoint)")
    if kind == "latest":
        path, state = _newest_valid(Path(folder), pattern, also, step_key, map_location)
        if path is None:
            log.info("No checkpoint in %s yet; starting from scratch.", folder)
            return None, None
    elif kind == "step":
        if pattern is None:
            raise CheckpointError(f"resume {spec!r}: this run has no step-numbered checkpoints; give a file")
        matches = [p for number, p in numbered(folder, pattern) if number == value]
        if not matches:
            present = [number for number, _ in numbered(folder, pattern)]
            raise CheckpointError(f"No checkpoint numbered {value} in {folder} (present: {present or 'none'})")
        path = matches[0]
        state = load(path, map_location)
    elif Path(value).is_dir():
        path, state = _newest_valid(Path(value), pattern, also, step_key, map_location)
        if path is None:
            raise CheckpointError(f"Resume folder {value} holds no valid checkpoint "
                                  f"(looked for {pattern or ''} {' '.join(also)})")
    else:
        if not Path(value).is_file():
            raise CheckpointError(f"Checkpoint not found: {value} (resume takes none, latest, a step number, a "
                                  f"folder or a checkpoint file)")
        path = _follow_pointer(Path(value))
        state = load(path, map_location)
    _resumed[path.parent.absolute()] = path.absolute()
    return path, state
