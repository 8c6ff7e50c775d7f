"""The typed schema of LAQ's Hydra config (`laq/config/`): dataclasses registered in Hydra's ConfigStore as
`laq_schema`, which `config.yaml` lists first, so every group file and command-line override is checked against it.

A wrong type is an error naming the key (`data.batch_size=abc` -> "Value 'abc' of type 'str' could not be converted
to Integer ... full_key: data.batch_size"; `data.pair_level=maybe` -> "... is not a valid bool"), an unknown key is an
error naming it (struct mode), and a string key keeps the text as typed: Hydra's parser reads `data.folder=2024.10`
as the float 2024.1 before any schema sees it, so `quote_string_overrides` quotes such values first.

Values are in the group files (`laq/config/data/*.yaml`, ...), which say what each named configuration chooses; the
defaults here make the schema a complete config on its own (for `build_model` and tests).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, get_args, get_origin, get_type_hints

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from laq.models.laq import LAQConfig

CONFIG_DIR = str(Path(__file__).resolve().parent / "config")


@dataclass
class DataConfig:
    layout: str = "auto"                  # auto | scenes | rawframes | webdataset
    folder: Any = "data/laq"              # one root (str) or a list of roots
    image_size: int = 256
    offsets: List[int] = field(default_factory=lambda: [30])
    pair_level: bool = False
    reverse: bool = False                 # training also sees every pair backwards in time (small data)
    augment: bool = False                 # training: same random crop-resize and flip on both frames (small data)
    batch_size: int = 32
    num_workers: int = 4
    prefetch_factor: int = 2
    pin_memory: bool = True
    max_samples: Optional[int] = None
    val_split: float = 0.1
    split_by: Optional[str] = None        # CSV column that keeps a group of scenes on one side of the split
    val_filters: Dict[str, Any] = field(default_factory=dict)  # a rule: val = the scenes matching these filters
    val_draws_per_scene: int = 8          # scene level: fixed pairs per held-out scene in validation
    sampling_seed: int = 42
    filters: Dict[str, Any] = field(default_factory=dict)
    strict: bool = False
    allow_outside_root: bool = False      # scenes.csv rows may point outside the data folder (../, absolute)
    shuffle_buffer: int = 1000            # webdataset


@dataclass
class OptimizerConfig:
    name: str = "adam"                    # adam (LAPA) | adamw
    lr: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0


@dataclass
class ProfilerConfig:
    enabled: bool = False
    type: str = "simple"                  # simple | pytorch


@dataclass
class TrainingConfig:
    epochs: int = 50
    max_steps: Optional[int] = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: str = "constant"         # constant (LAPA) | cosine (to 0 at the last step)
    warmup_steps: int = 0                 # linear warmup from 0
    grad_clip: float = 0.5
    precision: str = "auto"               # auto | bf16 | fp32
    val_every_steps: int = 1000
    val_max_batches: int = 50
    checkpoint_every_steps: int = 5000
    checkpoint_every_epochs: int = 10     # laq-epoch{N}.ckpt every N epochs (0: none)
    keep_last: int = 3
    max_nonfinite: int = 20
    deterministic: bool = False
    compile: bool = False
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)


@dataclass
class TrainerConfig:
    resume_from_checkpoint: Optional[str] = None   # PATH | latest | step number
    allow_config_change: bool = False              # resume although seed / data / model / optimizer changed
    device: str = "auto"                           # auto | cpu | cuda


@dataclass
class LoggingConfig:
    use_wandb: bool = False
    wandb_project: str = "laq"
    wandb_mode: str = "offline"
    log_every: int = 20
    image_every: int = 500


@dataclass
class LAQTrainConfig:
    experiment_name: str = "custom"
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    model: LAQConfig = field(default_factory=LAQConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def register() -> None:
    """Put the schema into Hydra's ConfigStore (idempotent); `config.yaml` merges it first."""
    ConfigStore.instance().store(name="laq_schema", node=LAQTrainConfig)


register()


def _is_string_key(path: Sequence[str]) -> bool:
    """True when the dotted key is a str (or Optional[str]) field of the schema, or an Any field whose default is a
    string (data.folder: one root, or a list of roots)."""
    node, hint, default = LAQTrainConfig, None, None
    for name in path:
        by_name = {f.name: f for f in fields(node)} if is_dataclass(node) else {}
        if name not in by_name:
            return False  # not in the schema (a free-form dict such as data.filters)
        hint, default = get_type_hints(node)[name], by_name[name].default
        node = hint
    if hint is Any:
        return isinstance(default, str)
    return hint is str or (get_origin(hint) is not None and set(get_args(hint)) == {str, type(None)})


def quote_string_overrides(overrides: Sequence[str]) -> list[str]:
    """Quote the values of `key=value` overrides whose schema type is str but which Hydra's grammar would read as
    a number or a bool (`data.folder=2024.10` -> `data.folder='2024.10'`), so the text stays as typed. Everything
    else (group choices, sweeps, lists, quoted values, null) passes through unchanged."""
    parser = OverridesParser.create()
    quoted = []
    for text in overrides:
        if text.startswith("-") or "=" not in text:  # Hydra's own flags (--cfg job, -m, ...)
            quoted.append(text)
            continue
        try:
            override = parser.parse_override(text)
        except HydraException:  # a malformed override: Hydra reports it itself, with its own message
            quoted.append(text)
            continue
        value = override.value() if not override.is_sweep_override() else None
        key = override.key_or_group
        if (override.is_delete() or override.package is not None or isinstance(value, str) or value is None
                or isinstance(value, (list, dict)) or not _is_string_key(key.split("."))):
            quoted.append(text)
            continue
        raw = text.split("=", 1)[1]
        quoted.append(f"{text.split('=', 1)[0]}='{raw}'")
    return quoted


def compose_config(overrides: Sequence[str] = ()):
    """The composed, typed training config for `overrides` (as the Hydra command line would give it)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=quote_string_overrides(overrides))


def validate(cfg) -> None:
    """Value ranges and choices the types cannot express, checked at start-up; errors name the key."""
    def need(ok: bool, key: str, value, what: str) -> None:
        if not ok:
            raise ValueError(f"{key}={value!r}: {what}")

    t, d, lg = cfg.training, cfg.data, cfg.logging
    for key, value in (("training.checkpoint_every_steps", t.checkpoint_every_steps),
                       ("training.val_every_steps", t.val_every_steps), ("training.epochs", t.epochs),
                       ("logging.log_every", lg.log_every), ("logging.image_every", lg.image_every),
                       ("data.batch_size", d.batch_size), ("data.image_size", d.image_size),
                       ("training.max_nonfinite", t.max_nonfinite)):
        need(value > 0, key, value, "must be a positive integer (a very large value effectively disables it)")
    for key, value in (("training.checkpoint_every_epochs", t.checkpoint_every_epochs),
                       ("training.keep_last", t.keep_last), ("data.num_workers", d.num_workers),
                       ("training.val_max_batches", t.val_max_batches), ("training.grad_clip", t.grad_clip),
                       ("training.warmup_steps", t.warmup_steps)):
        need(value >= 0, key, value, "must be >= 0 (0 disables it)")
    need(t.max_steps is None or t.max_steps > 0, "training.max_steps", t.max_steps, "must be positive or null")
    need(t.optimizer.lr > 0, "training.optimizer.lr", t.optimizer.lr, "must be positive")
    need(len(d.offsets) > 0 and all(o > 0 for o in d.offsets), "data.offsets", list(d.offsets),
         "must be a non-empty list of positive frame distances")
    choices = {"data.layout": (d.layout, ("auto", "scenes", "rawframes", "webdataset")),
               "training.profiler.type": (t.profiler.type, ("simple", "pytorch")),
               "training.lr_schedule": (t.lr_schedule, ("constant", "cosine")),
               "training.optimizer.name": (t.optimizer.name.lower(), ("adam", "adamw")),
               "trainer.device": (cfg.trainer.device.split(":")[0], ("auto", "cpu", "cuda")),
               "model.nsvq.threshold_mode": (cfg.model.nsvq.threshold_mode, ("batch", "share")),
               "model.nsvq.replace_from": (cfg.model.nsvq.replace_from, ("inputs", "codes")),
               "model.nsvq.init": (cfg.model.nsvq.init, ("normal", "uniform"))}
    for key, (value, allowed) in choices.items():
        need(value in allowed, key, value, f"use one of {list(allowed)}")


def from_saved(config: dict):
    """A checkpoint's saved (resolved) config as a typed DictConfig; keys added to the schema since it was written
    take their defaults."""
    return OmegaConf.merge(OmegaConf.structured(LAQTrainConfig), config)
