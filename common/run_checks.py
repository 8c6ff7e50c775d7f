"""Start-up checks that keep runs apart: a fresh run never writes into an old run's folder, and a resumed run
refuses a config change that would break exactness. Re-exported by `common.checkpoint`."""
from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

CHECKPOINT_GLOBS = ("*.pt", "*.pth", "*.tar", "*.ckpt", "*.safetensors")
_ABSENT = "<absent>"


class ConfigChangeError(ValueError):
    """A resumed run's config differs from the checkpoint's in a key that must not change; names each key."""


class RunFolderInUse(RuntimeError):
    """A fresh run was pointed at a folder that already holds another run's checkpoints."""


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and other values are leaves."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _matches(key: str, patterns: Iterable[str]) -> bool:
    """`key` is one of `patterns`, lies under one ("data" covers "data.batch_size"), or matches one as a glob."""
    return any(key == p or key.startswith(p + ".") or fnmatch.fnmatchcase(key, p) for p in patterns)


def check_resume_config(saved: Mapping | None, current: Mapping, exact_keys: Iterable[str],
                        allow_change: bool = False, ignore: Iterable[str] = (),
                        flag: str = "--allow_config_change", logger: logging.Logger | None = None) -> dict:
    """Compare the checkpoint's resolved config with this run's before resuming.

    exact_keys: dotted keys (or sections, or globs such as "optim.*") whose change breaks an exact continuation
    (learning rate, batch size, seed, data, model, ...): a change raises ConfigChangeError naming each key with its
    old and new value and `flag`, unless `allow_change`. Any other changed key is a warning (e.g. log_every).
    ignore: keys that differ by design between a run and its resumption (the resume option itself, the run
    folder, the number of steps when extending a run). Returns {key: (old, new)} of every change.
    """
    logger = logger or log
    if saved is None:
        logger.warning("The checkpoint holds no config: cannot check that the resumed run uses the same settings.")
        return {}
    old, new = flatten(saved), flatten(current)
    exact_keys, ignore = list(exact_keys), list(ignore)
    changes = {key: (old.get(key, _ABSENT), new.get(key, _ABSENT)) for key in sorted(old.keys() | new.keys())
               if old.get(key, _ABSENT) != new.get(key, _ABSENT) and not _matches(key, ignore)}
    breaking = {k: v for k, v in changes.items() if _matches(k, exact_keys)}
    described = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in breaking.items())
    if breaking and not allow_change:
        raise ConfigChangeError(f"Resuming with a changed config would not continue the run exactly: {described}. "
                                f"Resume with the checkpoint's values, or pass {flag} to accept the change.")
    if breaking:
        logger.warning("Resuming with config changes (%s given): %s", flag, described)
    harmless = {k: v for k, v in changes.items() if k not in breaking}
    if harmless:
        logger.warning("Resuming with changed settings that do not affect the training: %s",
                       "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in harmless.items()))
    return changes


def check_fresh_run_folder(folder: str | os.PathLike | None, resuming: bool,
                           globs: Iterable[str] = CHECKPOINT_GLOBS) -> None:
    """Refuse a fresh run (`resuming` false) in a folder that already holds checkpoints (searched recursively).

    Mixing two runs in one folder loses work: keep-last pruning and "resume latest" then pick the other run's
    files. The error names the folder and a few of its checkpoints. A resumed run, a missing or empty folder pass.
    """
    if resuming or folder is None or not Path(folder).is_dir():
        return
    globs = list(globs)
    found = sorted(p for p in Path(folder).rglob("*")
                   if p.is_file() and any(fnmatch.fnmatchcase(p.name, g) for g in globs))
    if found:
        shown = ", ".join(str(p.relative_to(folder)) for p in found[:5]) + (" ..." if len(found) > 5 else "")
        raise RunFolderInUse(f"Run folder {folder} already holds {len(found)} checkpoint(s) of an earlier run "
                             f"({shown}). Resume it (resume latest), or start the new run in another folder.")
