import pytest

from common.config import ConfigError, load_file, merge_strict, parse_overrides, save

DEFAULTS = {"model": {"dim": 8, "depth": 2}, "optim": {"lr": 1e-3}, "extras": {}}


def test_merge_overrides_nested_values():
    merged = merge_strict(DEFAULTS, {"model": {"dim": 16}})
    assert merged == {"model": {"dim": 16, "depth": 2}, "optim": {"lr": 1e-3}, "extras": {}}
    assert DEFAULTS["model"]["dim"] == 8  # defaults untouched


def test_unknown_key_is_an_error_naming_its_path():
    with pytest.raises(ConfigError, match=r"model\.dimm.*Known keys here: depth, dim"):
        merge_strict(DEFAULTS, {"model": {"dimm": 16}}, where="")
    assert merge_strict(DEFAULTS, {"extras": {"anything": 1}}, where="", open_keys=["extras"])["extras"] == {"anything": 1}


def test_dotted_overrides_parse_yaml_values():
    assert parse_overrides(["optim.lr=5e-4", "model.depth=3", "data.offsets=[15,30]", "name=run"]) == {
        "optim": {"lr": 5e-4}, "model": {"depth": 3}, "data": {"offsets": [15, 30]}, "name": "run"}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["nonsense"])


def test_files_load_and_errors_name_the_file(tmp_path):
    save({"a": 1}, tmp_path / "c.yaml")
    save({"a": 2}, tmp_path / "c.json")
    assert load_file(tmp_path / "c.yaml") == {"a": 1} and load_file(tmp_path / "c.json") == {"a": 2}
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="bad.json"):
        load_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="absent.yaml"):
        load_file(tmp_path / "absent.yaml")


def test_values_are_type_checked_against_defaults():
    assert merge_strict(DEFAULTS, {"optim": {"lr": 1}})["optim"]["lr"] == 1.0
    assert merge_strict(DEFAULTS, {"optim": {"lr": "5e-4"}})["optim"]["lr"] == 5e-4
    with pytest.raises(ConfigError, match=r"model\.depth.*number"):
        merge_strict(DEFAULTS, {"model": {"depth": "deep"}}, where="")


# ------------------------------------------------------------------ typed configs (OmegaConf structured configs)
from dataclasses import dataclass, field  # noqa: E402
from enum import Enum  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from omegaconf import MISSING  # noqa: E402

from common.config import load_config, to_dict  # noqa: E402


class Scheduler(Enum):
    constant = "constant"
    cosine = "cosine"


@dataclass
class Data:
    data_path: str = "data"
    batch_size: int = 8
    pair_level: bool = False
    offsets: List[int] = field(default_factory=lambda: [15, 30])
    tags: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Train:
    data: Data = field(default_factory=Data)
    lr: float = 1e-4
    warmup_steps: int = 0
    scheduler: Scheduler = Scheduler.constant
    max_steps: Optional[int] = None
    run_name: str = MISSING

    def __post_init__(self):
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


def test_typed_config_from_file_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("run_name: 2024.10\ndata:\n  data_path: 2024.10\n  tags: [1.10, x]\n  extra: {k: 1}\nlr: 5e-4\n")
    cfg = load_config(Train, path, ["data.batch_size=3", "scheduler=cosine", "max_steps=20", "data.pair_level=yes"])
    assert isinstance(cfg, Train) and isinstance(cfg.data, Data)
    assert cfg.run_name == "2024.10" and cfg.data.data_path == "2024.10"  # strings keep the text as written
    assert cfg.data.tags == ["1.10", "x"] and cfg.data.extra == {"k": 1}
    assert cfg.lr == 5e-4 and cfg.data.batch_size == 3 and cfg.data.pair_level is True
    assert cfg.scheduler is Scheduler.cosine and cfg.max_steps == 20 and cfg.data.offsets == [15, 30]
    assert load_config(Train, None, ["run_name=2024.10", "data.data_path=2024.10"]).data.data_path == "2024.10"
    assert to_dict(cfg)["scheduler"] == "cosine" and to_dict(cfg)["data"]["batch_size"] == 3
    save(cfg, tmp_path / "saved.yaml")
    assert load_config(Train, tmp_path / "saved.yaml") == cfg
    json_path = tmp_path / "run.json"
    json_path.write_text('{"run_name": "r", "data": {"data_path": 2024.10, "batch_size": 2}}')
    assert load_config(Train, json_path).data.data_path == "2024.10"


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=abc", r"override 'data.batch_size=abc': config key 'data.batch_size' expects an integer, got 'abc'"),
    ("data.pair_level=maybe", r"'data.pair_level' expects true or false, got 'maybe'"),
    ("lr=fast", r"'lr' expects a number, got 'fast'"),
    ("data.offsets=[a]", r"'data.offsets' expects a list of int"),
    ("scheduler=linear", r"'scheduler' expects one of constant, cosine, got 'linear'"),
    ("data.batchsize=2", r"unknown config key 'data.batchsize'. Known keys here: batch_size, data_path, extra"),
    ("data=3", r"'data' expects a section \(mapping\), got 3"),
    ("lr.x=1", r"'lr' is a value, not a section"),
    ("warmup_steps=-5", r"warmup_steps must be >= 0, got -5"),
    ("nonsense", r"must look like key.sub=value"),
])
def test_typed_config_errors_name_the_key_and_the_expected_type(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Train, None, ["run_name=r", override])


def test_typed_config_errors_name_the_file_and_missing_values(tmp_path):
    (tmp_path / "bad.yaml").write_text("run_name: r\ndata:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"config file .*bad.yaml: config key 'data.batch_size' expects an integer"):
        load_config(Train, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"'run_name' is required"):
        load_config(Train)
