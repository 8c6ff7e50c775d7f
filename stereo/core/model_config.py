"""The model's configuration: the keys of a training config's `model` section (MODEL_DEFAULTS, the values of the
released ViT-L model), their validation, and the conversion from / to the official `cfg.yaml` that ships with
FoundationStereo's checkpoints.

Every error names the key. Unknown keys are errors.
"""
from __future__ import annotations

from stereo.core.depth_anything import VIT_CONFIGS
from stereo.core.disparity_transformer import ATTEND_OVER
from stereo.core.geometry import IMPLEMENTATIONS

RANDOM = "random"  # the explicit value that leaves a pretrained part randomly initialised (tests, CPU demo)

MODEL_DEFAULTS = {
    "feature_type": "dinov2",            # the side-tuning adapter: frozen DepthAnything-V2 (DINOv2 + DPT) + EdgeNeXt
    "vit_size": "vitl",                  # vits | vitb | vitl (released); vitt: test-size, random weights only
    "vit_weights": None,                 # local depth_anything_v2_{vit_size}.pth, or "random"
    "edgenext_weights": None,            # local timm edgenext_small weights (.safetensors / .pth), or "random"
    "max_disp": 416,                     # px at full resolution, multiple of 32 (volume of max_disp/4 bins)
    "hidden_dims": [128, 128, 128],      # GRU hidden/context channels at 1/4, 1/8, 1/16 (equal; 128 = released)
    "n_gru_layers": 3,                   # 2 or 3 GRU levels
    "corr_levels": 2,
    "corr_radius": 4,
    "correlation_implementation": "reg",  # "reg" | "alt": the same numbers (stereo.core.geometry)
    "n_downsample": 2,                   # GRUs at 1/2^2; the only value the architecture supports
    "mixed_precision": False,            # true: fp16 autocast on CUDA inside the model, as the reference
    "attend_over": "disparity",          # Disparity Transformer axis (stereo.core.disparity_transformer)
    "train_iters": 22,
    "valid_iters": 32,
}

# cfg.yaml keys that shape the model, and how they map onto MODEL_DEFAULTS.
OFFICIAL_MODEL_KEYS = {"vit_size": "vit_size", "max_disp": "max_disp", "hidden_dims": "hidden_dims",
                       "n_gru_layers": "n_gru_layers", "corr_levels": "corr_levels", "corr_radius": "corr_radius",
                       "corr_implementation": "correlation_implementation", "n_downsample": "n_downsample",
                       "mixed_precision": "mixed_precision", "train_iters": "train_iters",
                       "valid_iters": "valid_iters"}
OFFICIAL_REQUIRED = ("max_disp", "hidden_dims", "n_gru_layers", "corr_levels", "corr_radius", "n_downsample",
                     "mixed_precision")
# Keys of the released cfg.yaml that describe the training run, not the model (read and ignored), plus
# `low_memory`, which the reference accepts but which changes nothing (its sampler ignores the flag).
OFFICIAL_RUN_KEYS = ("finetune_ckpt_name", "finetune_from", "img_gamma", "inference_tile", "low_memory",
                     "max_val_sample", "notes", "num_steps", "num_worker", "slow_fast_gru", "tags_more",
                     "tile_min_overlap", "tile_wtype", "time_limit", "val_interval", "wdecay", "world_size")


def check_model_config(cfg: dict, where: str = "model") -> dict:
    """MODEL_DEFAULTS updated by `cfg`, validated; raises ValueError naming `where.key`."""
    unknown = sorted(set(cfg) - set(MODEL_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown {where} keys {unknown}; known keys: {sorted(MODEL_DEFAULTS)}")
    cfg = {**MODEL_DEFAULTS, **cfg}

    def fail(key: str, expected: str):
        raise ValueError(f"{where}.{key} must be {expected}, got {cfg[key]!r}")

    if cfg["feature_type"] != "dinov2":
        fail("feature_type", "'dinov2' (FoundationStereo's frozen DepthAnything-V2 + EdgeNeXt adapter)")
    if cfg["vit_size"] not in VIT_CONFIGS:
        fail("vit_size", f"one of {sorted(VIT_CONFIGS)}")
    for key in ("vit_weights", "edgenext_weights"):
        if cfg[key] is not None and not isinstance(cfg[key], str):
            fail(key, f"a local file path or {RANDOM!r}")
    if cfg["vit_size"] == "vitt" and cfg["vit_weights"] != RANDOM:
        fail("vit_weights", f"{RANDOM!r} with vit_size 'vitt' (a test size: DepthAnything-V2 has no vitt release)")
    if not isinstance(cfg["max_disp"], int) or cfg["max_disp"] <= 0 or cfg["max_disp"] % 32:
        fail("max_disp", "a positive multiple of 32 (the 1/4-resolution volume goes through three stride-2 levels)")
    dims = cfg["hidden_dims"]
    if not isinstance(dims, (list, tuple)) or len(dims) != 3 or len(set(dims)) != 1 or dims[0] < 16 or dims[0] % 16:
        fail("hidden_dims", "three equal multiples of 16 (the GRUs all use hidden_dims[0]; the released model: 128)")
    if cfg["n_gru_layers"] not in (2, 3):
        fail("n_gru_layers", "2 or 3 (with 1 the reference never runs its 1/4 GRU)")
    for key in ("corr_levels", "corr_radius", "train_iters", "valid_iters"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            fail(key, "a positive integer")
    if cfg["correlation_implementation"] not in IMPLEMENTATIONS:
        fail("correlation_implementation", f"one of {IMPLEMENTATIONS}")
    if cfg["n_downsample"] != 2:
        fail("n_downsample", "2 (features, volume and GRUs are at 1/4 resolution)")
    if not isinstance(cfg["mixed_precision"], bool):
        fail("mixed_precision", "true or false")
    if cfg["attend_over"] not in ATTEND_OVER:
        fail("attend_over", f"one of {ATTEND_OVER}")
    cfg["hidden_dims"] = list(dims)
    return cfg


def model_config_from_official(official: dict, where: str = "cfg.yaml") -> dict:
    """The released cfg.yaml (as a dict) -> a model config. Unknown and missing keys are errors naming them; a
    missing `vit_size` means vitl, as in the reference's run_demo.py (the first release had no such key)."""
    unknown = sorted(set(official) - set(OFFICIAL_MODEL_KEYS) - set(OFFICIAL_RUN_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}. Known model keys: {sorted(OFFICIAL_MODEL_KEYS)}; known "
                         f"training-run keys (ignored): {sorted(OFFICIAL_RUN_KEYS)}")
    missing = [key for key in OFFICIAL_REQUIRED if key not in official]
    if missing:
        raise ValueError(f"{where}: missing keys {missing} (needed to build the model)")
    cfg = {OFFICIAL_MODEL_KEYS[key]: value for key, value in official.items() if key in OFFICIAL_MODEL_KEYS}
    cfg.setdefault("vit_size", "vitl")
    return check_model_config(cfg, where)


def official_config_from_model(cfg: dict) -> dict:
    """A model config -> the cfg.yaml dict the reference code reads (for exporting checkpoints)."""
    cfg = check_model_config(cfg)
    return {key: cfg[ours] for key, ours in OFFICIAL_MODEL_KEYS.items()}
