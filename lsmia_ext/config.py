"""YAML configs validated by pydantic.

A config is named (a file `lsmia_ext/configs/NAME.yaml` shipped with the package) or given as a path.
`--set key=value` overrides use dotted keys (`optim.lr=0.01`) and YAML values. Unknown keys and bad
values raise ConfigError naming the key and what is allowed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

CONFIG_DIR = Path(__file__).parent / "configs"
M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
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


def apply_overrides(data: dict, overrides: Iterable[str] = ()) -> dict:
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (dotted keys for nesting)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.setdefault(part, {}), dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
            node = node[part]
        node[parts[-1]] = value
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


def load_config(model: type[M], name_or_path: str | Path, overrides: Iterable[str] = ()) -> M:
    path = resolve_config_path(name_or_path)
    return validate(model, apply_overrides(read_yaml(path), overrides), source=str(path))


def config_hash(cfg: BaseModel | dict) -> str:
    """Stable short hash of a resolved config, used to decide whether an artifact can be reused."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
