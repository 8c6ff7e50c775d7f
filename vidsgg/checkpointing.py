"""Checkpoint contents of a vidsgg run, exact resume, and progressive loading (weights of another mode).

A checkpoint (`checkpoint_epoch_N.tar`, `checkpoint_best.tar`, `checkpoint_final.tar`, `checkpoint_last.tar`)
is a dict of tensors and plain containers (loads with weights_only=True): model, optimizer, scheduler, scaler,
guard, early-stopping state, epoch / step / batches_done, every rank's RNG state, the flags, the mode and model
name, and `extra` (model-specific state such as TEMPURA's memory).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from common import checkpoint

log = logging.getLogger(__name__)

LATEST = "checkpoint_last.tar"


def resolve(spec: str | None, run_dir: Path) -> tuple[Path | None, dict | None]:
    """-resume_from value -> (path, state). 'latest' is the run folder's checkpoint_last.tar (fresh if absent)."""
    if spec is None or spec.lower() in ("", "none"):
        return None, None
    if spec.lower() in ("latest", "auto", "last"):
        path = run_dir / LATEST
        if not path.is_file():
            log.info("-resume_from latest: no %s in %s yet; starting from scratch.", LATEST, run_dir)
            return None, None
        return path, checkpoint.load(path)
    return Path(spec), checkpoint.load(spec)


def is_exact_resume(state: dict, args: argparse.Namespace) -> bool:
    """Same model, mode, dataset and SceneLLM stage: continue the run. Otherwise the checkpoint only initialises
    compatible weights (progressive training: predcls -> sgcls, vqvae -> stage1 -> stage2, Action Genome -> EASG)."""
    saved = state.get("config", {})
    return (state.get("model_name") == args.model and state.get("mode") == args.mode
            and saved.get("dataset", "action_genome") == args.dataset
            and saved.get("scenellm_stage") == getattr(args, "scenellm_stage", None))


def load_compatible(model: torch.nn.Module, weights: dict) -> tuple[list[str], list[str]]:
    """Copy the tensors whose names and shapes match (progressive training); returns (loaded, skipped) names."""
    own = model.state_dict()
    loaded = [k for k, v in weights.items() if k in own and own[k].shape == v.shape]
    skipped = [k for k in weights if k not in loaded]
    model.load_state_dict({k: weights[k] for k in loaded}, strict=False)
    return loaded, skipped


def gather_rng(distributed: bool, world_size: int) -> list:
    """Every rank's RNG state (collective under DDP), so each rank resumes its own random stream."""
    states = [checkpoint.rng_state()]
    if distributed:
        states = [None] * world_size
        torch.distributed.all_gather_object(states, checkpoint.rng_state())
    return states
