"""The run configuration: the spec file `config_vae_sthv2.yaml` holds every key and its default; a user config
file and `--set key.sub=value` overrides are merged over it strictly (an unknown key is an error naming it)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from common.config import ConfigError, load_file, merge_strict, parse_overrides

SPEC_CONFIG = Path(__file__).with_name("config_vae_sthv2.yaml")

_CHOICES = {("data_params", "frames_per_video"): ("one", "all"),
            ("exp_params", "precision"): ("fp32", "bf16", "fp16")}
_POSITIVE_INTS = [("model_params", "in_channels"), ("model_params", "latent_dim"), ("model_params", "image_size"),
                  ("data_params", "train_batch_size"), ("data_params", "val_batch_size"),
                  ("trainer_params", "max_epochs"), ("trainer_params", "check_val_every_n_epoch"),
                  ("trainer_params", "log_every_n_steps"), ("logging_params", "save_every_n_steps"),
                  ("logging_params", "log_images_every_n_steps")]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict:
    """Spec defaults <- file at `path` (optional) <- dotted overrides. Raises ConfigError naming a bad key/value."""
    config = load_file(SPEC_CONFIG)
    if path is not None and Path(path).resolve() != SPEC_CONFIG.resolve():
        config = merge_strict(config, load_file(path), where="")
    config = merge_strict(config, parse_overrides(list(overrides)), where="")
    validate(config)
    return config


def validate(config: dict) -> None:
    """Check value types and ranges that would otherwise fail deep inside training."""
    for (section, key), allowed in _CHOICES.items():
        if config[section][key] not in allowed:
            raise ConfigError(f"{section}.{key}={config[section][key]!r}; expected one of {', '.join(allowed)}")
    for section, key in _POSITIVE_INTS:
        value = config[section][key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{section}.{key} must be a positive integer, got {value!r}")
    dims = config["model_params"]["hidden_dims"]
    if not isinstance(dims, list) or not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise ConfigError(f"model_params.hidden_dims must be a non-empty list of positive integers, got {dims!r}")
    gpus = config["trainer_params"]["gpus"]
    if not isinstance(gpus, int) or gpus < -1:
        raise ConfigError(f"trainer_params.gpus must be -1 (all), 0 (CPU) or a GPU count, got {gpus!r}")
    for section, key in [("exp_params", "LR"), ("exp_params", "scheduler_gamma"), ("exp_params", "kld_weight"),
                         ("exp_params", "weight_decay")]:
        value = config[section][key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{section}.{key} must be a non-negative number, got {value!r}")
    for section, key in [("exp_params", "max_grad_norm"), ("trainer_params", "gradient_clip_val"),
                         ("trainer_params", "max_steps")]:
        value = config[section][key]
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{section}.{key} must be null or a positive number, got {value!r}")
    fraction = config["data_params"]["val_fraction"]
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data_params.val_fraction must be in [0, 1), got {fraction!r}")


def run_dir(config: dict) -> Path:
    """logging_params.save_dir / logging_params.name: TensorBoard events, checkpoints/, metrics.json, config.yaml."""
    return Path(config["logging_params"]["save_dir"]) / str(config["logging_params"]["name"])


__all__ = ["ConfigError", "SPEC_CONFIG", "load_config", "validate", "run_dir"]
