"""LAPA's LAQ checkpoints in this project's model: key mapping, constructor arguments, and loading.

    from laq.lapa import load_lapa
    model = load_lapa("laq_openx.pt")                          # LAPA's train_sthv2.py sizes by default
    model = load_lapa(state_dict, dim=32, quant_dim=8, ...)    # or LAPA's constructor arguments
    out = model(first, future)                                 # recon (B, 3, H, W), indices (B, code_seq_len)

What LAPA's code writes (LatentActionPretraining/LAPA, laq/laq_model/laq_trainer.py): every `save_model_every`
steps `torch.save(self.vae.state_dict(), "results/vae.{steps}.pt")` — a bare state_dict, whose keys carry a
`module.` prefix when the model was wrapped for DDP (LAPA's own `LatentActionQuantization.load` strips it); its
`LAQTrainer.save` would write {"model", "optim", "steps", ...}. The released `laq_openx.pt` is loaded by LAPA's
`inference_sthv2.py` through `LatentActionQuantization.load`, i.e. a bare state_dict too. All three are accepted.

The model is built with `lapa_compat=True` (laq/models/laq.py): LAPA's temporal-PEG reshape and action-token
permutation, which its weights were trained with, so the outputs equal LAPA's (tests/laq/test_laq_lapa.py checks
recon to 1e-4 and identical code ids against LAPA's own code).
"""
from __future__ import annotations

import os
import re
from typing import Mapping

import torch

from common import checkpoint
from laq.models.laq import LAQConfig, LatentActionQuantization

# LAPA's train_sthv2.py (the paper's LAQ, 343,796,080 parameters). LAPA's constructor has no defaults for the
# first seven and defaults heads=8, code_seq_len=1; these are the values its training and inference scripts pass.
LAPA_TRAIN_STHV2 = dict(dim=1024, quant_dim=32, codebook_size=8, image_size=256, patch_size=32, spatial_depth=8,
                        temporal_depth=8, dim_head=64, heads=16, code_seq_len=4, channels=3, attn_dropout=0.0,
                        ff_dropout=0.0)

# LAPA module names -> ours, where they differ (the transformer stacks, position bias and NSVQ match key for key).
_RENAMES = [
    (r"^to_patch_emb_first_frame\.1\.", "patch_embed.norm_in."),
    (r"^to_patch_emb_first_frame\.2\.", "patch_embed.proj."),
    (r"^to_patch_emb_first_frame\.3\.", "patch_embed.norm_out."),
    (r"^to_pixels_first_frame\.0\.", "to_pixels.proj."),
]
# Our buffers that LAPA does not save (its hit counter is a plain tensor): NSVQ's replacement statistics.
_OURS_ONLY = ("vq.hits", "vq.window_batch", "vq.recent_inputs")


class LapaCheckpointError(ValueError):
    """A LAPA checkpoint that does not fit the model: the message lists the unknown, missing or mis-shaped keys."""


def is_lapa_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys are LAPA's names (its patch embedding is `to_patch_emb_first_frame`)."""
    return any(_strip_wrappers(key).startswith("to_patch_emb_first_frame.") for key in state)


def lapa_model_config(**lapa_kwargs) -> LAQConfig:
    """LAQConfig for LAPA's constructor arguments (dim, quant_dim, codebook_size, image_size, patch_size,
    spatial_depth, temporal_depth, dim_head, heads, code_seq_len, channels, attn_dropout, ff_dropout); unspecified
    ones take LAPA_TRAIN_STHV2's values. Always lapa_compat=True."""
    unknown = sorted(set(lapa_kwargs) - set(LAPA_TRAIN_STHV2))
    if unknown:
        raise TypeError(f"Unknown LAPA constructor argument(s) {unknown}; known: {sorted(LAPA_TRAIN_STHV2)}")
    values = {**LAPA_TRAIN_STHV2, **lapa_kwargs}
    return LAQConfig(name="lapa", lapa_compat=True, **{k: (float(v) if k.endswith("dropout") else int(v))
                                                        for k, v in values.items()})


def _strip_wrappers(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):  # DDP / accelerate, torch.compile
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def lapa_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LAPA key names -> this project's (wrapper prefixes removed, renamed modules mapped)."""
    mapped = {}
    for key, value in state.items():
        name = _strip_wrappers(key)
        for pattern, replacement in _RENAMES:
            name = re.sub(pattern, replacement, name)
        mapped[name] = value
    return mapped


def read_lapa_state_dict(path_or_state: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """The model state_dict inside a LAPA file (bare state_dict, or the trainer's {"model": ...}) or mapping.
    Files load with weights_only=True; a file that needs more than tensors is refused, naming the file."""
    state = checkpoint.load(path_or_state) if isinstance(path_or_state, (str, os.PathLike)) else path_or_state
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]  # LAQTrainer.save's package
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v)}
    if len(tensors) != len(state):
        others = sorted(k for k in state if k not in tensors)
        raise LapaCheckpointError(f"Not a LAPA state_dict: entries {others[:5]} are not tensors")
    return tensors


def load_lapa_weights(model: LatentActionQuantization, state: Mapping[str, torch.Tensor],
                      source: str = "LAPA checkpoint") -> None:
    """Copy a LAPA state_dict into `model` (ours); unknown, missing or mis-shaped keys are an error listing them."""
    mapped = lapa_to_ours(state)
    ours = model.state_dict()
    unknown = sorted(set(mapped) - set(ours))
    missing = sorted(set(ours) - set(mapped) - set(_OURS_ONLY))
    shapes = sorted(f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(ours[k].shape)}"
                    for k in set(mapped) & set(ours) if k not in _OURS_ONLY and mapped[k].shape != ours[k].shape)
    if unknown or missing or shapes:
        parts = [f"unknown keys {unknown}" if unknown else "", f"missing keys {missing}" if missing else "",
                 f"shape mismatches {shapes} (are LAPA's constructor arguments right?)" if shapes else ""]
        raise LapaCheckpointError(f"{source} does not fit the model: " + "; ".join(p for p in parts if p))
    with torch.no_grad():
        for key, value in mapped.items():
            if key not in _OURS_ONLY:
                ours[key].copy_(value)


def load_lapa(path_or_state_dict: str | os.PathLike | Mapping, **lapa_kwargs) -> LatentActionQuantization:
    """A LatentActionQuantization (eval mode, lapa_compat=True) holding a LAPA checkpoint's weights.

    path_or_state_dict: the file LAPA's trainer saves (results/vae.{steps}.pt, laq_openx.pt) or a state_dict with
    LAPA's key names. lapa_kwargs: LAPA's constructor arguments (defaults: LAPA_TRAIN_STHV2).
    `model(first, future)` with frames (B, 3, H, W) in [0, 1] returns recon (B, 3, H, W) and indices (B, L).
    """
    source = str(path_or_state_dict) if isinstance(path_or_state_dict, (str, os.PathLike)) else "LAPA state_dict"
    model = LatentActionQuantization(lapa_model_config(**lapa_kwargs))
    load_lapa_weights(model, read_lapa_state_dict(path_or_state_dict), source)
    return model.eval()
