"""Building the stereo model from a training config's `model` section: FoundationStereo, with its pretrained
parts loaded from the local files the config names (stereo.core.pretrained)."""
from __future__ import annotations

from torch import nn

from stereo.core.foundation_stereo import FoundationStereo
from stereo.core.model_config import MODEL_DEFAULTS, check_model_config
from stereo.core.pretrained import check_weight_files, load_depth_anything, load_edgenext

__all__ = ["MODEL_DEFAULTS", "build_model", "count_parameters", "validate_model_config"]


def validate_model_config(cfg: dict) -> None:
    """Raise ValueError naming the key for a value the model cannot use (unknown keys included)."""
    check_model_config(cfg)


def build_model(model_cfg: dict, load_pretrained: bool = True) -> FoundationStereo:
    """A FoundationStereo for `model_cfg`. load_pretrained=False skips model.vit_weights / model.edgenext_weights
    (the caller loads a whole-model checkpoint next, or builds on the meta device to count parameters)."""
    if load_pretrained:
        check_weight_files(check_model_config(model_cfg))
    model = FoundationStereo(model_cfg)
    if load_pretrained:
        load_depth_anything(model.feature.dino.depth_anything, model.cfg["vit_weights"], model.cfg["vit_size"])
        load_edgenext(model.feature, model.cfg["edgenext_weights"])
    return model


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
