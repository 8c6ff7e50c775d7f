"""Checkpoint contents of a vidsgg run, which one to resume, what a resume may change, and progressive loading.

A checkpoint is a dict of tensors and plain containers (loads with weights_only=True): model, optimizer,
scheduler, scaler, guard, early-stopping state, epoch / step / batches_done (the position in the epoch), the
epoch's running loss, `loss` (the last epoch's mean training loss, as the guide's manual format), every rank's RNG
state, the flags (`config`), the world size, the mode and model name and the model's config.

Files of a run folder:
  checkpoint_step_<S>.tar   resumable state after optimizer step S: at every epoch end, every -save_every_steps
                            steps and on SIGTERM/SIGUSR1; the newest -keep_last of this run are kept
  checkpoint_last.tar       a hard link to the newest step file (or a copy where links are not possible)
  checkpoint_epoch_<N>.tar  every -save_freq epochs (newest -keep_last kept); checkpoint_best.tar, _final.tar
`-resume_from latest` takes the newest step file that loads: a truncated or corrupt newer one is reported and
passed over. The guide's "manual" format ({'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss',
'config'}) is read too (`load`).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
from pathlib import Path

import torch

from common import checkpoint
from vidsgg.features.backbone import channels
from vidsgg.models.build import build_model
from vidsgg.models.reference import ReferenceWeightsError, import_reference, is_reference_checkpoint
from vidsgg.options import MODEL_FLAGS
from vidsgg.option_checks import parse_train_args

log = logging.getLogger(__name__)

LATEST = "checkpoint_last.tar"
STEP_PATTERN = r"checkpoint_step_(\d+)\.tar"
EPOCH_PATTERN = r"checkpoint_epoch_(\d+)\.tar"
RESUME_WORDS = ("latest", "auto", "last")
# Flags whose change breaks an exact resume (the maths of the remaining steps would differ from the interrupted
# run's): the optimisation, the data order, the model. Other changed flags are reported and accepted.
EXACT_FLAGS = ("lr", "batch_size", "accumulate_grad_batches", "weight_decay", "scheduler", "warmup_steps",
               "clip_grad", "seed", "datasize", "curriculum", "curriculum_boundaries", "bce_loss", "use_amp",
               "max_steps", "spatial_layer", "temporal_layer", "hidden_dim", "proj_dim", "embed_dim", "union_dim",
               "num_heads", "window", "bn_momentum", "word_vectors", "backbone_depth", "backbone_weights",
               "image_size", "max_size", "world_size")
NEVER_COMPARED = ("save_path", "resume_from", "init_from", "allow_config_change", "notices", "local_rank",
                  "scenellm_stages")


class ResumeError(RuntimeError):
    """A resume or a fresh start that would mix two runs or change an exact resume's maths."""


# ------------------------------------------------------------------------------------------------------ reading
def load(path: str | os.PathLike) -> dict:
    """A checkpoint of this project or in the guide's manual format, as this project's dict. Raises
    CheckpointError naming the file when it is missing, truncated or holds something weights_only refuses."""
    # The guide saves `'config': config`, typically the argparse Namespace: a plain attribute container.
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = checkpoint.load(path)
    if not isinstance(state, dict):
        raise checkpoint.CheckpointError(f"Checkpoint {path} holds a {type(state).__name__}, not a dict")
    return from_guide_format(state, path) if "model_state_dict" in state else state


def from_guide_format(state: dict, path: str | os.PathLike) -> dict:
    """{'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss', 'config'} -> this project's keys. `config`
    (a dict or Namespace of train.py's flags) names the model and mode; without it the current flags are assumed.
    There is no scheduler, RNG or step: a resume from it continues at `epoch` with the schedule recomputed."""
    config = state.get("config") or {}
    config = vars(config) if isinstance(config, argparse.Namespace) else dict(config)
    out = {"model": state["model_state_dict"], "epoch": int(state.get("epoch", 0)), "loss": state.get("loss"),
           "config": config, "model_name": config.get("model"), "mode": config.get("mode"), "format": "guide"}
    if state.get("optimizer_state_dict") is not None:
        out["optimizer"] = state["optimizer_state_dict"]
    log.info("%s is in the guide's manual checkpoint format (epoch %s, no scheduler or RNG state).", path,
             out["epoch"])
    return out


def with_model_config(state: dict) -> dict:
    """Add `model_config` to a guide-format checkpoint by building its model (on the meta device) from the flags
    in its `config` over train.py's defaults, so test.py can rebuild it."""
    if "model_config" in state:
        return state
    args = parse_train_args([])
    known = {k: v for k, v in state["config"].items() if k in vars(args)}
    vars(args).update(known)
    if args.dataset == "easg":
        raise checkpoint.CheckpointError("A guide-format checkpoint of -dataset easg cannot be rebuilt from its "
                                         "flags alone; evaluate a checkpoint written by vidsgg/train.py")
    union_channels, feature_dim = channels(args.backbone_depth)
    with torch.device("meta"):
        model = build_model(args, feature_dim, union_channels)
    return {**state, "model_name": args.model, "mode": state.get("mode") or args.mode,
            "model_config": model.config_dict(), "config": {**vars(args), **known}}


def resolve(spec: str | None, run_dir: Path) -> tuple[Path | None, dict | None]:
    """-resume_from -> (path, state): None = fresh start; 'latest' = the newest valid step checkpoint of
    `run_dir` (fresh start when there is none yet); else a checkpoint file."""
    if spec is None or str(spec).lower() in ("", "none", "null", "false"):
        return None, None
    if str(spec).lower() in RESUME_WORDS:
        path, state = checkpoint.load_latest_valid(run_dir, STEP_PATTERN)
        if path is None:
            log.info("-resume_from %s: no checkpoint in %s yet; starting from scratch.", spec, run_dir)
        return path, state
    return Path(spec), load(spec)


def is_exact_resume(state: dict, args: argparse.Namespace) -> bool:
    """Same model, mode, dataset and SceneLLM stage: continue the run. Otherwise the checkpoint only initialises
    compatible weights (progressive training: predcls -> sgcls, vqvae -> stage1 -> stage2, Action Genome -> EASG).
    A guide-format checkpoint that does not name its model or mode is taken to be of the current ones; a released
    reference checkpoint (weights only) never continues a run."""
    if is_reference_checkpoint(state):
        return False
    saved = state.get("config", {})
    return (state.get("model_name") in (None, args.model) and state.get("mode") in (None, args.mode)
            and saved.get("dataset", args.dataset if state.get("format") == "guide" else "action_genome")
            == args.dataset and saved.get("scenellm_stage", getattr(args, "scenellm_stage", None))
            == getattr(args, "scenellm_stage", None))


def load_released(model: torch.nn.Module, state: dict, path: str | os.PathLike, name: str,
                  backbone_weights: str | None) -> None:
    """The weights of a released reference checkpoint ({'state_dict'} in STTran's / TEMPURA's / STKET's key names,
    TEMPURA's 'rel_memory' and 'object_memory' beside) into `model` (-model `name`); SGCLS/SGDET's class head comes
    from the AG Faster R-CNN file given as -backbone_weights. Raises ReferenceWeightsError naming the file."""
    detector = load(backbone_weights).get("model") if backbone_weights else None
    try:
        import_reference(state["state_dict"], model, name, detector=detector, rel_memory=state.get("rel_memory"),
                         object_memory=state.get("object_memory"))
    except ReferenceWeightsError as exc:
        raise ReferenceWeightsError(f"{path}: {exc}") from exc


def load_compatible(model: torch.nn.Module, weights: dict) -> tuple[list[str], list[str]]:
    """Copy the tensors whose names and shapes match (progressive training); returns (loaded, skipped) names."""
    own = model.state_dict()
    loaded = [k for k, v in weights.items() if k in own and own[k].shape == v.shape]
    skipped = [k for k in weights if k not in loaded]
    model.load_state_dict({k: weights[k] for k in loaded}, strict=False)
    return loaded, skipped


# ---------------------------------------------------------------------------------------------- what may change
def check_fresh_run_folder(run_dir: Path, resumed: Path | None) -> None:
    """A new run must not write into a folder that holds another run's checkpoints (their files would mix and
    `latest` would pick the old run's); continuing a run of that folder is fine."""
    if resumed is not None and Path(resumed).resolve().parent == Path(run_dir).resolve():
        return
    found = sorted(p.name for p in Path(run_dir).glob("checkpoint_*.tar"))
    if found:
        raise ResumeError(f"{run_dir} already holds checkpoints of a run ({', '.join(found[:3])}"
                          f"{', ...' if len(found) > 3 else ''}): pass -resume_from latest to continue it, or give "
                          "another -save_path for a new run")


def check_resume_config(saved: dict, current: dict, allow_change: bool) -> None:
    """Refuse an exact resume whose flags change the training maths (EXACT_FLAGS and the model's own flags),
    unless `allow_change`; report the other changed flags."""
    exact = EXACT_FLAGS + MODEL_FLAGS.get(current.get("model"), ())
    if current.get("scheduler") in ("step", "cosine"):
        exact += ("epochs",)  # these schedules are laid out over the planned steps of all epochs
    changed = {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
               if k not in NEVER_COMPARED and k in saved and saved.get(k) != current.get(k)}
    breaking = {k: v for k, v in changed.items() if k in exact}
    for key, (old, new) in changed.items():
        if key not in breaking:
            log.warning("Resuming with -%s %s (the checkpoint's run had %s).", key, new, old)
    if breaking and not allow_change:
        listing = ", ".join(f"-{k} {old} -> {new}" for k, (old, new) in breaking.items())
        raise ResumeError(f"Resuming exactly with changed flags would mix two trainings: {listing}. Give the "
                          "checkpoint's values, or -allow_config_change True to continue anyway")
    for key, (old, new) in breaking.items():
        log.warning("-allow_config_change: -%s changes from %s to %s; the resumed run is not exact.", key, old, new)


# ---------------------------------------------------------------------------------------------------- writing
def link_latest(run_dir: Path, newest: Path) -> None:
    """checkpoint_last.tar -> `newest`, replaced atomically: a hard link (no extra disk), else a copy."""
    tmp = run_dir / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(newest, tmp)
    except OSError:
        shutil.copyfile(newest, tmp)
    os.replace(tmp, run_dir / LATEST)


def prune(run_dir: Path, keep_last: int, pattern: str, written: list[Path], keep: tuple[Path, ...] = ()) -> None:
    """Delete this run's oldest numbered checkpoints beyond `keep_last` (0 keeps all). Only files this run
    `written` are candidates; `keep` (the one just written, the one resumed from) is never removed."""
    if keep_last <= 0:
        return
    regex = re.compile(pattern)
    ours = sorted({p for p in written if regex.fullmatch(p.name) and p.is_file()},
                  key=lambda p: int(regex.fullmatch(p.name).group(1)))
    keep_resolved = {Path(p).resolve() for p in keep}
    for path in ours[:-keep_last]:
        if path.resolve() not in keep_resolved:
            path.unlink(missing_ok=True)


def remove_stale_temp_files(run_dir: Path) -> None:
    """Temporary files of saves that were killed half-way (`.checkpoint_*.tar.XXXX.tmp`)."""
    for path in Path(run_dir).glob(".checkpoint_*.tmp"):
        log.info("Removing %s (left by an interrupted save).", path)
        path.unlink(missing_ok=True)


def gather_rng(distributed: bool, world_size: int) -> list:
    """Every rank's RNG state (collective under DDP), so each rank resumes its own random stream."""
    states = [checkpoint.rng_state()]
    if distributed:
        states = [None] * world_size
        torch.distributed.all_gather_object(states, checkpoint.rng_state())
    return states
