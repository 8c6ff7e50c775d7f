"""The run configuration: a typed schema (dataclasses) checked by OmegaConf structured configs.

Defaults live in the dataclasses below and follow the guide; `config_vae_sthv2.yaml` lists the same values (a test
keeps the two equal). A user's YAML file (`--config`) and `--set key.sub=value` overrides are merged over the
schema: an unknown key or a value of the wrong type is an error naming the dotted key. The result is a plain dict
(the form checkpoints store), in the schema's key order.

    load_config("my.yaml", ["exp_params.LR=3e-4", "model_params.hidden_dims=[32,64]"])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from common import config as common_config
from common.config import ConfigError

SPEC_CONFIG = Path(__file__).with_name("config_vae_sthv2.yaml")


@dataclass
class ModelParams:
    name: str = "VanillaVAE"                 # the only model implemented
    in_channels: int = 3
    latent_dim: int = 256
    hidden_dims: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])
    image_size: int = 256                    # frames are resized (squashed) to image_size x image_size


@dataclass
class DataParams:
    data_path: str = "data/sthv2"            # frames/<video_id>/img_XXXXX.jpg, or LAQ's scenes.csv layout
    labels_dir: Optional[str] = None         # train.json / validation.json; None: look next to the data
    image_size: Optional[int] = None         # the guide's key; None or equal to model_params.image_size
    train_batch_size: int = 64               # per process
    val_batch_size: int = 64
    num_workers: int = 4
    pin_memory: bool = True                  # page-locked batches (used on CUDA only)
    frames_per_video: str = "one"            # one | all
    val_fraction: float = 0.05               # hash split only (no official label files)
    max_val_videos: Optional[int] = 2000
    strict: bool = False                     # raise on a bad frame instead of skipping it
    baseline_fit_frames: int = 1024          # training frames that fit the mean-image and PCA baselines (0: off)
    random_flips: str = "none"               # training frames only: none | horizontal | both (+ vertical); not the guide's


@dataclass
class ExpParams:
    LR: float = 1e-4
    weight_decay: float = 0.0
    scheduler_gamma: float = 0.95            # ExponentialLR, stepped once per epoch
    kld_weight: float = 1e-4
    max_grad_norm: Optional[float] = 1.0     # total-norm clipping (None: off)
    manual_seed: int = 1265
    precision: str = "fp32"                  # fp32 | bf16 | fp16


@dataclass
class TrainerParams:
    gpus: int = -1                           # -1: every visible GPU (CPU when none); 0: CPU; N: N GPUs
    max_epochs: int = 200
    max_steps: Optional[int] = None
    gradient_clip_val: Optional[float] = 1.0  # Lightning's meaning: clip the total norm (algorithm "norm")
    gradient_clip_algorithm: str = "norm"    # norm | value (Lightning's two algorithms)
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 50
    deterministic: bool = False
    profile: bool = False


@dataclass
class LoggingParams:
    save_dir: str = "logs_vae"
    name: Optional[str] = "VanillaVAE_sthv2"  # run folder save_dir/name; None: a new time-stamped folder
    save_every_n_steps: int = 5000
    log_images_every_n_steps: int = 5000
    keep_last_checkpoints: int = 3           # <= 0: keep all


@dataclass
class VAEConfig:
    model_params: ModelParams = field(default_factory=ModelParams)
    data_params: DataParams = field(default_factory=DataParams)
    exp_params: ExpParams = field(default_factory=ExpParams)
    trainer_params: TrainerParams = field(default_factory=TrainerParams)
    logging_params: LoggingParams = field(default_factory=LoggingParams)


# ---------------------------------------------------------------- loading

def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict:
    """Schema defaults <- YAML file at `path` (optional) <- dotted `--set` overrides, validated; a plain dict.

    Loading is common.config.load_config (OmegaConf structured config of VAEConfig): ConfigError naming the key for
    an unknown key or a wrong type; `validate` adds the ranges and choices that types cannot express."""
    resolved = common_config.to_dict(common_config.load_config(VAEConfig, path, overrides, override_name="--set"))
    validate(resolved)
    return resolved


# ---------------------------------------------------------------- checks that types cannot express

_CHOICES = {"data_params.frames_per_video": ("one", "all"),
            "data_params.random_flips": ("none", "horizontal", "both"), "exp_params.precision": ("fp32", "bf16", "fp16"),
            "trainer_params.gradient_clip_algorithm": ("norm", "value"), "model_params.name": ("VanillaVAE",)}
_POSITIVE = ["model_params.in_channels", "model_params.latent_dim", "model_params.image_size",
             "data_params.train_batch_size", "data_params.val_batch_size", "trainer_params.max_epochs",
             "trainer_params.check_val_every_n_epoch", "trainer_params.log_every_n_steps",
             "logging_params.save_every_n_steps", "logging_params.log_images_every_n_steps", "exp_params.LR",
             "trainer_params.max_steps", "exp_params.max_grad_norm", "trainer_params.gradient_clip_val",
             "data_params.max_val_videos", "data_params.image_size"]
_NON_NEGATIVE = ["data_params.num_workers", "data_params.baseline_fit_frames", "exp_params.weight_decay",
                 "exp_params.kld_weight"]


def _get(config: dict, dotted: str):
    section, key = dotted.split(".")
    return config[section][key]


def validate(config: dict) -> None:
    """Ranges and choices, checked at start-up (a zero interval would fail after the first step)."""
    for dotted, allowed in _CHOICES.items():
        if _get(config, dotted) not in allowed:
            raise ConfigError(f"{dotted}={_get(config, dotted)!r}; expected one of {', '.join(allowed)}")
    for dotted in _POSITIVE:  # None means "off" / "no limit" where the schema allows it
        value = _get(config, dotted)
        if value is not None and not value > 0:
            raise ConfigError(f"{dotted} must be positive, got {value!r}")
    for dotted in _NON_NEGATIVE:
        if _get(config, dotted) < 0:
            raise ConfigError(f"{dotted} must be >= 0, got {_get(config, dotted)!r}")
    dims = config["model_params"]["hidden_dims"]
    if not dims or min(dims) < 1:
        raise ConfigError(f"model_params.hidden_dims must be a non-empty list of positive integers, got {dims!r}")
    side, n_stages = config["model_params"]["image_size"], len(dims)
    if side % 2 ** n_stages:
        raise ConfigError(f"model_params.image_size={side} must be divisible by 2^len(hidden_dims) = "
                          f"{2 ** n_stages} (each encoder stage halves the side)")
    data_side = config["data_params"]["image_size"]
    if data_side is not None and data_side != side:
        raise ConfigError(f"data_params.image_size={data_side} differs from model_params.image_size={side}: frames "
                          "are resized to the model's size; set both to the same value (or drop data_params.image_size)")
    if config["trainer_params"]["gpus"] < -1:
        raise ConfigError(f"trainer_params.gpus must be -1 (all), 0 (CPU) or a GPU count, got "
                          f"{config['trainer_params']['gpus']}")
    if not 0.0 < config["exp_params"]["scheduler_gamma"] <= 1.0:
        raise ConfigError(f"exp_params.scheduler_gamma must be in (0, 1], got {config['exp_params']['scheduler_gamma']}")
    if not 0.0 <= config["data_params"]["val_fraction"] < 1.0:
        raise ConfigError(f"data_params.val_fraction must be in [0, 1), got {config['data_params']['val_fraction']}")


def run_dir(config: dict) -> Path:
    """logging_params.save_dir / logging_params.name: TensorBoard events, checkpoints/, metrics.json, config.yaml.
    Raises ConfigError when the name is null (the training run then makes a new time-stamped folder)."""
    name = config["logging_params"]["name"]
    if name is None:
        raise ConfigError("logging_params.name is null: each run makes a new time-stamped folder under "
                          f"{config['logging_params']['save_dir']}, so there is no fixed run folder")
    return Path(config["logging_params"]["save_dir"]) / str(name)


__all__ = ["ConfigError", "SPEC_CONFIG", "VAEConfig", "load_config", "validate", "run_dir"]
