"""The pretrained parts of a freshly built FoundationStereo, from local files only (nothing is ever downloaded):

  model.vit_weights       DepthAnything-V2's released `depth_anything_v2_vit{s,b,l}.pth` (keys `pretrained.*`,
                          `depth_head.*`), into the frozen branch `feature.dino.depth_anything`;
  model.edgenext_weights  timm's ImageNet weights of `edgenext_small` (`model.safetensors` / `pytorch_model.bin`
                          from timm/edgenext_small.usi_in1k, or an original EdgeNeXt release, converted by timm's
                          own filter), into `feature.stem` / `feature.stages`.

Either may be "random" (explicitly: tests and the CPU demo); left unset, it is an error that names the key and
the file to get. A checkpoint of the whole model (load_official, --init_from) makes both unnecessary.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models.edgenext import checkpoint_filter_fn
from torch import nn

from stereo.core.model_config import RANDOM


class PretrainedWeightsError(ValueError):
    pass


def _require_file(value, key: str, what: str) -> Path:
    if value is None:
        raise PretrainedWeightsError(
            f"model.{key} is not set: FoundationStereo needs {what} as a local file (nothing is downloaded). Set "
            f"model.{key} to its path, or to {RANDOM!r} to start from random weights (tests and demos only), or "
            "start from a whole-model checkpoint (--init_from / --checkpoint).")
    path = Path(value)
    if not path.is_file():
        raise PretrainedWeightsError(f"model.{key}: file not found: {path} (expected {what})")
    return path


def check_weight_files(cfg: dict) -> None:
    """Fail before building anything when a pretrained part names no file or a missing one (a ViT-L takes seconds
    to build)."""
    if cfg["vit_weights"] != RANDOM:
        _require_file(cfg["vit_weights"], "vit_weights", f"DepthAnything-V2's depth_anything_v2_{cfg['vit_size']}.pth")
    if cfg["edgenext_weights"] != RANDOM:
        _require_file(cfg["edgenext_weights"], "edgenext_weights",
                      "timm's edgenext_small ImageNet weights (model.safetensors)")


def _check_and_load(module: nn.Module, state: dict, path: Path, key: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        raise PretrainedWeightsError(
            f"model.{key}: {path} does not fit the model ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(wrong)} with other shapes, e.g. {wrong[:3]}). Check model.vit_size and the file.")
    module.load_state_dict({k: state[k] for k in own})


def load_depth_anything(depth_anything: nn.Module, value, vit_size: str) -> None:
    """Load depth_anything_v2_{vit_size}.pth into the DepthAnythingV2 module (strict: every key, every shape)."""
    if value == RANDOM:
        return
    path = _require_file(value, "vit_weights", f"DepthAnything-V2's depth_anything_v2_{vit_size}.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    _check_and_load(depth_anything, state, path, "vit_weights")


def load_edgenext(feature: nn.Module, value) -> None:
    """Load timm-format edgenext_small ImageNet weights into feature.stem / feature.stages (the head is dropped)."""
    if value == RANDOM:
        return
    path = _require_file(value, "edgenext_weights", "timm's edgenext_small ImageNet weights (model.safetensors)")
    state = timm.models.load_state_dict(str(path))
    reference = timm.create_model("edgenext_small", pretrained=False)
    state = checkpoint_filter_fn(state, reference)  # original EdgeNeXt releases -> timm names (timm files pass through)
    own = nn.ModuleDict({"stem": feature.stem, "stages": feature.stages})
    _check_and_load(own, state, path, "edgenext_weights")
