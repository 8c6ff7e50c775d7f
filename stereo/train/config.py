"""The training config (json): defaults for every key, strict merging (an unknown key is an error naming it),
and validation of the values the model and data cannot use."""
from __future__ import annotations

import copy

from common.config import ConfigError, load_file, merge_strict
from stereo.core.model import MODEL_DEFAULTS, validate_model_config
from stereo.train.augment import AUGMENTATION_DEFAULTS
from stereo.train.dataloader import FORMATS

DATASET_DEFAULTS = {"name": "", "path": None, "weight": 1.0, "label_type": "dense", "image_augmentation": True,
                    "format": "folder"}

DEFAULTS = {
    "model": MODEL_DEFAULTS,
    "data": {
        "datasets": [],                 # training mix: entries as DATASET_DEFAULTS
        "val_datasets": [],             # validation sets (full images, no augmentation)
        "image_sizes": [[320, 736]],    # crop (H, W); one is drawn per batch
        "max_disparity": 416,           # valid GT: finite and 0 < d < max_disparity
        "stereo_augmentation": AUGMENTATION_DEFAULTS,
        "num_workers": 2,
        "strict": False,                # True: a bad file raises; False: skipped, counted, summarised per epoch
    },
    "loss": {  # replaced as a whole when the config file has a "loss" section
        "init": {"function": "smooth_l1", "weight": 1.0, "params": {"prediction": "init"}},
        "sequence": {"function": "sequence", "weight": 1.0, "params": {"gamma": 0.9}},
    },
    "optimizer": {"type": "AdamW", "lr": 1e-4, "weight_decay": 1e-5, "betas": [0.9, 0.999]},
    "lr_scheduler": {"kind": "step", "warmup_steps": 0, "step_size": 160000, "gamma": 0.1, "min_lr_ratio": 0.0},
    "train": {
        "clip_grad": 1.0,
        "ema_decay": 0.999,
        "mixed_precision_dtype": "bf16",  # used with --enable_mixed_precision true: bf16, or fp16 (+ GradScaler)
        "keep_last": 3,                   # checkpoints kept (0 = all)
        "val_every": 0,                   # validate every N steps (0: only at the end)
        "max_nonfinite": 20,              # consecutive skipped non-finite steps before stopping
        "freeze_bn": False,               # True: BatchNorm in eval mode while training (RAFT-Stereo)
    },
}


def load_config(path: str) -> dict:
    """File -> full config: defaults merged strictly, datasets checked entry by entry, values validated."""
    user = load_file(path)
    loss = user.pop("loss", None)
    config = merge_strict(DEFAULTS, user, where="")
    if loss is not None:
        if not isinstance(loss, dict) or not loss:
            raise ConfigError(f"{path}: 'loss' must be a non-empty mapping of named terms")
        config["loss"] = copy.deepcopy(loss)
    for key in ("datasets", "val_datasets"):
        entries = []
        for i, entry in enumerate(config["data"][key]):
            entry = merge_strict(DATASET_DEFAULTS, entry, where=f"data.{key}[{i}]")
            if not entry["path"]:
                raise ConfigError(f"{path}: data.{key}[{i}].path is required")
            if entry["format"] not in FORMATS:
                raise ConfigError(f"{path}: data.{key}[{i}].format must be one of {FORMATS}, got {entry['format']!r}")
            if entry["label_type"] not in ("dense", "sparse"):
                raise ConfigError(f"{path}: data.{key}[{i}].label_type must be 'dense' or 'sparse'")
            entries.append(entry)
        config["data"][key] = entries
    try:
        validate_model_config(config["model"])
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for size in config["data"]["image_sizes"]:
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"{path}: data.image_sizes entries must be [H, W], got {size}")
    return config
