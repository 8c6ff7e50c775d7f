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
