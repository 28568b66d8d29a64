"""load_generator / load_discriminator: one entry point for every kind of prior.

Accepted by load_generator:
- a run directory of `lsmia train-prior` (RUN_DIR/generator.pt) or such a generator.pt file;
- a YAML file or dict spec with `kind`:
    lsmia:          {kind: lsmia, path: RUN_DIR or generator.pt}
    module:         a plain torch module (see module_adapter.py)
    stylegan2-ada:  an NVlabs network pickle, only with trust_pickle: true (see stylegan2_adapter.py)
  Relative paths in a YAML spec are resolved against the YAML file's folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

from torch import nn

from ..config import ConfigError, Strict, read_yaml, validate
from ..registry import Registry, UnknownName
from .interface import Generator
from .module_adapter import ModuleGenerator, ModuleSpec
from .store import load_our_discriminator, load_style_generator
from .stylegan2_adapter import PICKLE_WARNING, StyleGan2AdaSpec, load_stylegan2_ada


class OursSpec(Strict):
    kind: Literal["lsmia"]
    path: Path


def _load_ours(spec: OursSpec, base_dir: Path | None) -> Generator:
    path = spec.path if spec.path.is_absolute() or base_dir is None else base_dir / spec.path
    return load_style_generator(path / "generator.pt" if path.is_dir() else path)


# spec kind -> (the spec's pydantic model, build(spec, base_dir) -> Generator)
GENERATOR_KINDS: Registry[tuple[type[Strict], Callable[..., Generator]]] = Registry("generator kind")
GENERATOR_KINDS.register("lsmia", (OursSpec, _load_ours))
GENERATOR_KINDS.register("module", (ModuleSpec, ModuleGenerator))
GENERATOR_KINDS.register("stylegan2-ada", (StyleGan2AdaSpec, load_stylegan2_ada))


def generator_from_spec(spec: dict, base_dir: Path | None = None, source: str = "generator spec") -> Generator:
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: a generator spec is a mapping with a 'kind' key; got {type(spec).__name__}")
    try:
        model, build = GENERATOR_KINDS.get(spec.get("kind"))
    except UnknownName as e:
        raise ConfigError(f"{source}: {e}") from None
    return build(validate(model, spec, source=source), base_dir)


def load_generator(source) -> Generator:
    """A frozen Generator (eval mode, no parameter gradients) from a run dir, .pt file, YAML or dict spec."""
    if isinstance(source, Generator):
        return source
    if isinstance(source, dict):
        return generator_from_spec(source)
    path = Path(source)
    if path.is_dir():
        if not (path / "generator.pt").exists():
            raise FileNotFoundError(f"{path} has no generator.pt: not a finished `lsmia train-prior` run directory")
        return load_style_generator(path / "generator.pt")
    if not path.exists():
        raise FileNotFoundError(f"generator {path} does not exist")
    if path.suffix in (".yaml", ".yml"):
        return generator_from_spec(read_yaml(path), base_dir=path.parent, source=str(path))
    if path.suffix == ".pkl":
        raise ConfigError(f"{path} is a pickle: {PICKLE_WARNING}; to load it anyway write a YAML spec "
                          "{kind: stylegan2-ada, pickle: PATH, trust_pickle: true}")
    return load_style_generator(path)


def load_discriminator(source) -> nn.Module:
    """Our trained discriminator (realness logit (B,) for [0, 1] images) from a run dir or .pt file."""
    path = Path(source)
    if path.is_dir():
        path = path / "discriminator.pt"
    if not path.exists():
        raise FileNotFoundError(f"discriminator {path} does not exist (a finished `lsmia train-prior` run "
                                "directory holds discriminator.pt)")
    return load_our_discriminator(path)
