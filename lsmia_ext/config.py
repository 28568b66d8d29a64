"""YAML configs validated by pydantic.

A config is named (a file `lsmia_ext/configs/NAME.yaml` shipped with the package) or given as a path.
Overrides are a mapping of dotted keys to values ({"optim.lr": 0.01}); the CLI's `--set key=value`
strings become one with parse_overrides (values read as YAML), once, at the CLI boundary. Unknown keys
and bad values raise ConfigError naming the key and what is allowed.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserInputError

CONFIG_DIR = Path(__file__).parent / "configs"
M = TypeVar("M", bound=BaseModel)


class ConfigError(UserInputError):
    """A config that cannot be used; the message names the key and what is allowed."""


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def check_betas(betas: tuple[float, float], key: str = "betas") -> tuple[float, float]:
    """Adam betas must both lie in [0, 1); shared by every config with an Adam section."""
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"{key} must both lie in [0, 1), got {betas}")
    return betas


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise ConfigError(f"config {str(name_or_path)!r} is neither a YAML file nor a shipped config; "
                      f"shipped configs: {', '.join(available_configs())}")


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` strings -> {dotted key: value}, each value read as YAML; the one place where
    override strings are parsed (the CLI boundary). A key given twice keeps its last value."""
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (dotted keys for nesting)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
        overrides.pop(key.strip(), None)
        overrides[key.strip()] = value
    return overrides


def merge_overrides(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Override mappings applied one after the other, as one mapping (a later layer wins, and a key it
    repeats moves to its place in the order, so applying the result equals applying the layers in turn)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            merged.pop(key, None)
            merged[key] = value
    return merged


def flatten_overrides(mapping: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 5}, "fid.num_samples": 9} -> {"train.steps": 5, "fid.num_samples": 9}.

    Nested mappings and dotted keys may be mixed (YAML files tend to nest, --set adds nested keys);
    naming the same leaf twice is an error rather than a silent pick of one."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        items = flatten_overrides(value, f"{full}.") if isinstance(value, dict) and value else {full: value}
        for k, v in items.items():
            if k in flat:
                raise ConfigError(f"override {k!r} is given twice (once nested, once dotted)")
            flat[k] = v
    return flat


def apply_overrides(data: dict, overrides: Mapping[str, Any] = MappingProxyType({})) -> dict:
    """A copy of `data` with every {dotted key: value} of `overrides` set (values are leaves: a mapping
    value replaces the whole section; flatten_overrides first to merge into it instead)."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must be a mapping of dotted keys to values, got {type(overrides).__name__} "
                          "(parse KEY=VALUE strings with lsmia_ext.config.parse_overrides)")
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for key, value in overrides.items():
        node = data
        parts = str(key).strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.setdefault(part, {}), dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
            node = node[part]
        node[parts[-1]] = copy.deepcopy(value)
    return data


def validate(model: type[M], data: dict, source: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(model, err["loc"][:-1])
                lines.append(f"unknown key {key!r}; allowed keys here: {', '.join(allowed)}")
            else:
                lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    node: Any = model
    for part in loc:
        field = getattr(node, "model_fields", {}).get(part)
        if field is None:
            return []
        node = field.annotation
    return sorted(getattr(node, "model_fields", {}).keys())


def load_config(model: type[M], name_or_path: str | Path,
                overrides: Mapping[str, Any] = MappingProxyType({})) -> M:
    path = resolve_config_path(name_or_path)
    return validate(model, apply_overrides(read_yaml(path), overrides), source=str(path))


def config_hash(cfg: BaseModel | dict) -> str:
    """Stable short hash of a resolved config, used to decide whether an artifact can be reused."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
