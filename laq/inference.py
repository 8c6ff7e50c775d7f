"""Load a trained LAQ checkpoint and run it: latent action ids and future-frame predictions.

Stable API (other projects, e.g. `vae_latent/compare_with_laq.py`, call it):

    from laq.inference import load_model, predict_next, latent_actions, load_frame
    model = load_model("RUN/checkpoints/last.pt")             # eval mode, on CPU unless device= is given
    first = load_frame("a.jpg", model.cfg.image_size)[None]   # (1, 3, H, W) float in [0, 1]
    future = load_frame("b.jpg", model.cfg.image_size)[None]
    pred = predict_next(model, first, future)                 # Prediction(frame (B,3,H,W), codes (B,L) int64)
    codes = latent_actions(model, first, future)              # (B, L) int64, each in [0, codebook_size)
    frame = decode_codes(model, first, codes)                 # (B, 3, H, W): the future a chosen action gives
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch

from common import checkpoint
from common.data import image_to_tensor, read_image
from laq.models import LatentActionQuantization, build_model


class Prediction(NamedTuple):
    frame: torch.Tensor  # (B, 3, H, W) float, predicted future frame (roughly [0, 1]; not clamped by the model)
    codes: torch.Tensor  # (B, L) int64 latent action ids


def load_model(ckpt_path: str | os.PathLike, device: str | torch.device = "cpu") -> LatentActionQuantization:
    """A model in eval mode from a training checkpoint (it holds the resolved config); errors name the file."""
    state = checkpoint.load(ckpt_path, map_location="cpu")
    if "config" not in state or "model" not in state.get("config", {}):
        raise checkpoint.CheckpointError(f"{ckpt_path} has no 'config.model' section; is it a LAQ checkpoint?")
    model = build_model(state["config"]["model"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_frame(path: str | os.PathLike, image_size: int) -> torch.Tensor:
    """An image file as a (3, image_size, image_size) float tensor in [0, 1] (squashed to a square, as LAPA)."""
    return image_to_tensor(read_image(path, image_size))


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_next(model: LatentActionQuantization, first: torch.Tensor, future: torch.Tensor) -> Prediction:
    """first, future: (B, 3, H, W) in [0, 1] -> the predicted future frame (from first + quantised action) and
    the code ids. Uses the hard codes (eval mode) whatever mode the model was in."""
    was_training = model.training
    model.eval()
    try:
        out = model(first.to(_device(model)), future.to(_device(model)))
    finally:
        model.train(was_training)
    return Prediction(frame=out["recon"].float(), codes=out["indices"])


def latent_actions(model: LatentActionQuantization, first: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) x2 in [0, 1] -> (B, code_seq_len) int64 latent action ids."""
    return predict_next(model, first, future).codes


@torch.no_grad()
def decode_codes(model: LatentActionQuantization, first: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """The future frame (B, 3, H, W) the model predicts for `first` under the chosen code ids (B, L)."""
    return model.decode_codes(first.to(_device(model)), codes.to(_device(model))).float()


def codes_to_action_id(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(B, L) code ids -> (B,) one integer per sequence in [0, codebook_size**L) (first position most significant)."""
    ids = torch.zeros(codes.shape[0], dtype=torch.int64, device=codes.device)
    for position in range(codes.shape[1]):
        ids = ids * codebook_size + codes[:, position]
    return ids
