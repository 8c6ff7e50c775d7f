"""The training config: a typed schema (dataclasses) checked by OmegaConf structured configs, read from the
guide's JSON `--config` file.

The file may be written as the guide writes it: `//` comments, `stereo_augmentation: true|false`,
`image_augmentation: ["jittering"]` (or true/false), `label_type` naming the loss group, a `loss` section of
groups `{label_type: {term: {function, weight, params}}}` with the guide's `*_loss` function names, and
`image_sizes` as [W, H] (MoGe's order: [640, 480] is VGA). `load_config` returns the resolved config as a plain
dict; an unknown key, a value of the wrong type or a value the code cannot use is a ConfigError naming the key.

The `model` section is passed as it is to the model builder, which applies its defaults and checks its keys.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from common.config import ConfigError
from stereo.train.augment import IMAGE_AUGMENTATIONS, NO_AUGMENTATION, AugmentationConfig
from stereo.train.dataloader import FORMATS

OPTIMIZERS = ("AdamW", "Adam", "SGD")
SCHEDULES = ("constant", "cosine", "step", "exponential")


@dataclass
class DatasetConfig:
    path: str = MISSING
    name: str = ""
    weight: float = 1.0                 # mixing weight among the training datasets
    label_type: str = "stereo"          # the loss group `loss.<label_type>` used for this dataset's samples
    image_augmentation: List[str] = field(default_factory=lambda: list(IMAGE_AUGMENTATIONS))
    format: str = "folder"              # folder | middlebury | kitti
    sparse_labels: Optional[bool] = None  # scattered GT points (resized point by point); None: kitti format only


@dataclass
class DataConfig:
    datasets: List[DatasetConfig] = field(default_factory=list)      # the training mix
    val_datasets: List[DatasetConfig] = field(default_factory=list)  # full images, no augmentation
    image_sizes: List[List[int]] = field(default_factory=lambda: [[736, 320]])  # crops [W, H], one per batch
    max_disparity: float = 416.0        # valid GT: finite and 0 < d < max_disparity (px)
    stereo_augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    num_workers: int = 2
    strict: bool = False                # True: a bad file raises; False: skipped, counted, summarised per epoch


@dataclass
class LossTerm:
    function: str = MISSING             # a function of stereo.train.losses (the guide's "<name>_loss" is accepted)
    weight: float = 1.0
    params: Dict[str, Any] = field(default_factory=dict)


def _default_loss() -> dict:
    return {"stereo": {"init": {"function": "smooth_l1", "weight": 1.0, "params": {"prediction": "init"}},
                       "sequence": {"function": "sequence", "weight": 1.0, "params": {"gamma": 0.9}}}}


@dataclass
class OptimizerConfig:
    type: str = "AdamW"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedulerConfig:
    kind: str = "step"                  # constant | cosine | step | exponential (common.sched)
    warmup_steps: int = 0
    step_size: int = 160000
    gamma: float = 0.1
    min_lr_ratio: float = 0.0


@dataclass
class TrainConfig:
    clip_grad: float = 1.0
    ema_decay: float = 0.999
    mixed_precision_dtype: str = "bf16"  # with --enable_mixed_precision true: bf16, or fp16 (+ GradScaler)
    keep_last: int = 3                   # checkpoints kept (0 = all)
    val_every: int = 0                   # validate every N steps (0: only at the end)
    max_nonfinite: int = 20              # consecutive skipped non-finite steps before stopping
    freeze_bn: bool = False              # True: BatchNorm in eval mode while training (RAFT-Stereo)


@dataclass
class StereoTrainConfig:
    model: Dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    loss: Dict[str, Any] = field(default_factory=_default_loss)  # groups of LossTerm, checked one by one
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_json(path: str | Path) -> dict:
    """A JSON file that may carry `//` comments (as the guide's snippets do); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    # Drop // comments outside strings: a string literal matches the first alternative and is kept.
    text = re.sub(r'("(?:\\.|[^"\\])*")|//[^\n]*', lambda m: m.group(1) or "", path.read_text())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a JSON object, found {type(data).__name__}")
    return data


def typed(schema, value, where: str) -> dict:
    """`value` merged over the dataclass `schema` by OmegaConf -> plain dict; errors name the dotted key."""
    try:
        return OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), value), throw_on_missing=True)
    except OmegaConfBaseException as exc:
        key = ".".join(part for part in (where, exc.full_key) if part) or "(top level)"
        raise ConfigError(f"config key '{key}': {str(exc).splitlines()[0]}") from exc


def resolve(user: dict) -> dict:
    """The user's config (as read from the file) -> the full config, every key typed and checked."""
    user = copy.deepcopy(user)
    data = user.setdefault("data", {})
    if not isinstance(data, dict):
        raise ConfigError(f"config key 'data' must be a mapping, got {data!r}")
    entries = {key: data.pop(key, []) for key in ("datasets", "val_datasets")}
    if isinstance(data.get("stereo_augmentation"), bool):  # the guide's switch: defaults on, or all off
        data["stereo_augmentation"] = {} if data["stereo_augmentation"] else copy.deepcopy(NO_AUGMENTATION)
    loss = user.pop("loss", None)
    config = typed(StereoTrainConfig, user, "")
    for key, items in entries.items():
        if not isinstance(items, list):
            raise ConfigError(f"config key 'data.{key}' must be a list of datasets, got {items!r}")
        config["data"][key] = [typed(DatasetConfig, _dataset_forms(item), f"data.{key}[{i}]")
                               for i, item in enumerate(items)]
    label_types = sorted({entry["label_type"] for entry in config["data"]["datasets"]}) or ["stereo"]
    config["loss"] = _default_loss() if loss is None else _loss_groups(loss, label_types)
    check_values(config)
    return config


def load_config(path: str | Path) -> dict:
    """Config file -> the resolved config (see the module docstring); errors name the file and the key."""
    user = read_json(path)
    try:
        return resolve(user)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _dataset_forms(entry):
    """The guide's `image_augmentation: true|false` -> the list of image augmentations (all or none)."""
    if isinstance(entry, dict) and isinstance(entry.get("image_augmentation"), bool):
        entry = {**entry, "image_augmentation": list(IMAGE_AUGMENTATIONS) if entry["image_augmentation"] else []}
    return entry


def _loss_groups(loss, label_types: list[str]) -> dict:
    """`loss` as groups {label_type: {term: LossTerm}}. A flat section {term: {function, ...}} applies to every
    label type. The guide's function names end in `_loss` (`disparity_l1_loss`): the suffix is dropped."""
    if not isinstance(loss, dict) or not loss:
        raise ConfigError("config key 'loss' must be a non-empty mapping of loss groups (see stereo/README.md)")
    if all(isinstance(term, dict) and "function" in term for term in loss.values()):
        loss = {label_type: loss for label_type in label_types}
    groups = {}
    for group, terms in loss.items():
        if not isinstance(terms, dict) or not terms:
            raise ConfigError(f"config key 'loss.{group}' must map term names to {{function, weight, params}}")
        groups[group] = {}
        for name, term in terms.items():
            term = typed(LossTerm, term, f"loss.{group}.{name}")
            term["function"] = term["function"].removesuffix("_loss")
            groups[group][name] = term
    return groups


def _require(condition: bool, key: str, expected: str, value) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' must be {expected}, got {value!r}")


def check_values(config: dict) -> None:
    """Values of the right type that the code still cannot use (a ConfigError naming the key)."""
    data = config["data"]
    for key in ("datasets", "val_datasets"):
        for i, entry in enumerate(data[key]):
            where = f"data.{key}[{i}]"
            _require(entry["format"] in FORMATS, f"{where}.format", f"one of {FORMATS}", entry["format"])
            _require(entry["weight"] >= 0, f"{where}.weight", ">= 0", entry["weight"])
            unknown = sorted(set(entry["image_augmentation"]) - set(IMAGE_AUGMENTATIONS))
            _require(not unknown, f"{where}.image_augmentation", f"a list of {list(IMAGE_AUGMENTATIONS)}", unknown)
            if key == "datasets":
                _require(entry["label_type"] in config["loss"], f"{where}.label_type",
                         f"a loss group of the config's 'loss' section ({sorted(config['loss'])})", entry["label_type"])
    for i, size in enumerate(data["image_sizes"]):
        _require(len(size) == 2 and min(size) > 0, f"data.image_sizes[{i}]", "[W, H] with positive sizes", size)
    _require(len(data["image_sizes"]) > 0, "data.image_sizes", "a non-empty list of [W, H] crops", data["image_sizes"])
    _require(data["max_disparity"] > 0, "data.max_disparity", "> 0 (px)", data["max_disparity"])
    _require(data["num_workers"] >= 0, "data.num_workers", ">= 0", data["num_workers"])
    for group, terms in config["loss"].items():
        for name, term in terms.items():
            _require(term["weight"] >= 0, f"loss.{group}.{name}.weight", ">= 0", term["weight"])
    optimizer, schedule, train = config["optimizer"], config["lr_scheduler"], config["train"]
    _require(optimizer["type"] in OPTIMIZERS, "optimizer.type", f"one of {OPTIMIZERS}", optimizer["type"])
    _require(optimizer["lr"] > 0, "optimizer.lr", "> 0", optimizer["lr"])
    _require(optimizer["weight_decay"] >= 0, "optimizer.weight_decay", ">= 0", optimizer["weight_decay"])
    _require(len(optimizer["betas"]) == 2, "optimizer.betas", "two numbers", optimizer["betas"])
    _require(schedule["kind"] in SCHEDULES, "lr_scheduler.kind", f"one of {SCHEDULES}", schedule["kind"])
    _require(schedule["warmup_steps"] >= 0, "lr_scheduler.warmup_steps", ">= 0", schedule["warmup_steps"])
    _require(schedule["step_size"] >= 1, "lr_scheduler.step_size", ">= 1", schedule["step_size"])
    _require(schedule["gamma"] > 0, "lr_scheduler.gamma", "> 0", schedule["gamma"])
    _require(0 <= schedule["min_lr_ratio"] <= 1, "lr_scheduler.min_lr_ratio", "in [0, 1]", schedule["min_lr_ratio"])
    _require(train["clip_grad"] > 0, "train.clip_grad", "> 0 (the gradient-norm limit)", train["clip_grad"])
    _require(0 <= train["ema_decay"] < 1, "train.ema_decay", "in [0, 1)", train["ema_decay"])
    _require(train["mixed_precision_dtype"] in ("bf16", "fp16"), "train.mixed_precision_dtype", "bf16 or fp16",
             train["mixed_precision_dtype"])
    _require(train["keep_last"] >= 0, "train.keep_last", ">= 0 (0 keeps all)", train["keep_last"])
    _require(train["val_every"] >= 0, "train.val_every", ">= 0 (0: only at the end)", train["val_every"])
    _require(train["max_nonfinite"] >= 1, "train.max_nonfinite", ">= 1", train["max_nonfinite"])
