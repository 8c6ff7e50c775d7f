"""Configs: typed schemas (dataclasses) checked by OmegaConf structured configs, loaded from YAML/JSON files plus
dotted `key.sub=value` overrides, with errors that name the key, its expected type and where the value came from.

    @dataclass
    class Train:
        lr: float = 1e-4
        batch_size: int = 8
        data_path: str = MISSING           # required
    cfg = load_config(Train, "run.yaml", ["lr=5e-4", "data_path=2024.10"])   # -> a Train instance
    cfg.data_path == "2024.10"            # a string field keeps the text as written (YAML would read 2024.1)

Range checks belong in the schema's `__post_init__` (raise ValueError; it is reported as a ConfigError).
`to_dict(cfg)` gives the nested dict a checkpoint stores and `save` writes.

The older dict-based helpers (`merge_strict`, `parse_overrides`, `load_file`) stay for the callers that still
merge plain dicts of defaults.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from omegaconf.nodes import BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def load_file(path: str | Path) -> dict:
    """A .yaml/.yml/.json file as a dict; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"Config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level, found {type(data).__name__}")
    return data


def merge_strict(defaults: Mapping, update: Mapping, where: str = "config", open_keys: Sequence[str] = ()) -> dict:
    """`defaults` updated by `update`, recursively. A key of `update` that `defaults` lacks is an error naming
    its dotted path, unless its parent's dotted path is in `open_keys` (free-form sections)."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in update.items():
        dotted = f"{where}.{key}" if where else key
        if key not in merged:
            if where in open_keys:
                merged[key] = copy.deepcopy(value)
                continue
            known = ", ".join(sorted(map(str, merged))) or "(none)"
            raise ConfigError(f"Unknown config key '{dotted}'. Known keys here: {known}")
        if isinstance(merged[key], dict) and isinstance(value, Mapping):
            merged[key] = merge_strict(merged[key], value, dotted, open_keys)
        else:
            merged[key] = _checked(merged[key], _number_or_self(value), dotted)
    return merged


def _number_or_self(value):
    """YAML 1.1 reads '5e-4' as a string; users mean a number."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            return value
    return value


def _checked(default, value, dotted: str):
    """`value` if its type fits the default's (ints may stand for floats; None defaults accept anything)."""
    if default is None or value is None:
        return copy.deepcopy(value)
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfigError(f"Config key '{dotted}' expects {type(default).__name__}, got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    numeric = (int, float)
    if isinstance(default, numeric) and not isinstance(value, numeric):
        raise ConfigError(f"Config key '{dotted}' expects a number, got {value!r}")
    if isinstance(default, (list, tuple)) != isinstance(value, (list, tuple)):
        raise ConfigError(f"Config key '{dotted}' expects {type(default).__name__}, got {value!r}")
    return copy.deepcopy(value)


def split_override(item: str, override_name: str = "override") -> tuple[list[str], str]:
    """"a.b=1" -> (["a", "b"], "1"); ConfigError (saying what `override_name` calls it) without "=" or with an
    empty key."""
    if "=" not in item:
        raise ConfigError(f"{override_name} {item!r} must look like key.sub=value")
    dotted, raw = item.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"{override_name} {item!r} has an empty key")
    return keys, raw


def parse_overrides(items: Sequence[str]) -> dict:
    """["a.b=1", "c=[1,2]"] -> {"a": {"b": 1}, "c": [1, 2]}; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for item in items:
        keys, raw = split_override(item, "Override")
        try:
            value = _number_or_self(yaml.safe_load(raw)) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"Override {item!r}: value is not valid YAML: {exc}") from exc
        node = nested
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override {item!r} conflicts with an earlier override of '{key}'")
        node[keys[-1]] = value
    return nested


def save(config: Mapping | Any, path: str | Path) -> None:
    """Write the resolved config (a dict or a schema instance) into the run folder (YAML or JSON by suffix)."""
    if dataclasses.is_dataclass(config):
        config = to_dict(config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=2) if path.suffix == ".json" else yaml.safe_dump(dict(config), sort_keys=False)
    path.write_text(text)


# ------------------------------------------------------------------------------------ typed (structured) configs
def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                override_name: str = "override") -> T:
    """An instance of the dataclass `schema`: its defaults, updated by the YAML/JSON file at `path` (if any), then
    by dotted `key.sub=value` overrides (`override_name` says what they are called in errors, e.g. "--set").

    Raises ConfigError naming the file or override and the dotted key for an unknown key (listing the known ones),
    a value of the wrong type (naming the expected type), a missing required (MISSING) value, or a ValueError of
    the schema's `__post_init__`. A string field keeps its text exactly as written.
    """
    config = OmegaConf.structured(schema)
    if path is not None:
        typed, raw = _read_typed_and_raw(Path(path))
        _merge_mapping(config, typed, raw, source=f"config file {path}", prefix="")
    for item in overrides:
        keys, text = split_override(item, override_name)
        parent = config
        for depth, key in enumerate(keys[:-1]):
            node = _child(parent, key, f"{override_name} {item!r}", ".".join(keys[:depth]))
            if not isinstance(node, DictConfig):
                raise ConfigError(f"{override_name} {item!r}: '{'.'.join(keys[:depth + 1])}' is a value, not a section")
            parent = node
        try:
            typed = _number_or_self(yaml.safe_load(text)) if text.strip() else None
            raw = yaml.load(text, Loader=yaml.BaseLoader) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{override_name} {item!r}: value is not valid YAML: {exc}") from exc
        _merge_value(parent, keys[-1], typed, raw, f"{override_name} {item!r}", ".".join(keys[:-1]))
    try:
        return OmegaConf.to_object(config)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"Config key '{exc.full_key}' is required: set it in the config file or with "
                          f"{exc.full_key}=VALUE") from exc
    except ConfigError:
        raise
    except ValueError as exc:  # the schema's own checks (__post_init__)
        raise ConfigError(f"Invalid config: {exc}") from exc


def to_dict(config: Any) -> dict:
    """A schema instance (or DictConfig) as a nested dict of plain values (enums as their names)."""
    node = config if isinstance(config, DictConfig) else OmegaConf.structured(config)
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def _read_typed_and_raw(path: Path) -> tuple[dict, Any]:
    """The file read twice: with types (YAML/JSON rules) and with every scalar as the text written."""
    typed = load_file(path)
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
    else:
        raw = yaml.load(text, Loader=yaml.BaseLoader)
    return typed, raw


def _is_structured(node: DictConfig) -> bool:
    return dataclasses.is_dataclass(OmegaConf.get_type(node))


def _child(parent: DictConfig, key: str, source: str, prefix: str):
    dotted = f"{prefix}.{key}" if prefix else key
    if key not in parent.keys():  # (`in parent` is False for a MISSING value)
        if _is_structured(parent):
            known = ", ".join(sorted(str(k) for k in parent.keys())) or "(none)"
            raise ConfigError(f"{source}: unknown config key '{dotted}'. Known keys here: {known}")
        return None
    return parent._get_node(key)


_EXPECTED = {IntegerNode: "an integer", FloatNode: "a number", BooleanNode: "true or false", StringNode: "a string"}


def _expected(node) -> str:
    if isinstance(node, EnumNode):
        return "one of " + ", ".join(member.name for member in node.enum_type)
    if isinstance(node, ListConfig):
        element = node._metadata.element_type
        return f"a list of {getattr(element, '__name__', element)}"
    if isinstance(node, DictConfig):
        return "a section (mapping)"
    return next((text for kind, text in _EXPECTED.items() if isinstance(node, kind)), "a value")


def _merge_mapping(parent: DictConfig, typed: Mapping, raw: Any, source: str, prefix: str) -> None:
    raw_items = list(raw.items()) if isinstance(raw, Mapping) else [(None, None)] * len(typed)
    for (key, value), (_, raw_value) in zip(typed.items(), raw_items):
        _merge_value(parent, str(key), value, raw_value, source, prefix)


def _merge_value(parent: DictConfig, key: str, value: Any, raw: Any, source: str, prefix: str) -> None:
    dotted = f"{prefix}.{key}" if prefix else key
    node = _child(parent, key, source, prefix)
    if isinstance(node, DictConfig) and _is_structured(node) and value is not None:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: config key '{dotted}' expects a section (mapping), got {value!r}")
        _merge_mapping(node, value, raw, source, dotted)
        return
    if value is not None and isinstance(node, StringNode) and isinstance(raw, str):
        value = raw  # the text as written: data_path: 2024.10 stays "2024.10"
    elif (value is not None and isinstance(node, ListConfig) and node._metadata.element_type is str
          and isinstance(raw, list)):
        value = raw
    try:
        parent[key] = value
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: config key '{dotted}' expects {_expected(node)}, got {value!r} "
                          f"({str(exc).splitlines()[0]})") from exc
