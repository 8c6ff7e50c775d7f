"""Strict nested configs for the projects that use plain YAML/JSON files (vae_latent, stereo, ...):
merge a file over defaults, apply dotted `key.sub=value` overrides, and reject unknown keys by name."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


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


def parse_overrides(items: Sequence[str]) -> dict:
    """["a.b=1", "c=[1,2]"] -> {"a": {"b": 1}, "c": [1, 2]}; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like key.sub=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ConfigError(f"Override {item!r} has an empty key")
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


def save(config: Mapping, path: str | Path) -> None:
    """Write the resolved config into the run folder (YAML or JSON by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=2) if path.suffix == ".json" else yaml.safe_dump(dict(config), sort_keys=False)
    path.write_text(text)
