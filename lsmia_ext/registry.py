"""Registry: one name -> object table, the single pattern behind models, defenses, attacks, generator
priors and identity losses.

    ATTACKS = Registry("attack")
    @ATTACKS.register("ppa")
    def attack_batch(...): ...
    ATTACKS.get("ppa")        # unknown names raise UnknownName listing the known ones
    ATTACKS.names()           # ('ppa', ...) in registration order

Configs take their allowed values from a registry with `registry.check` as a pydantic field validator
(`AfterValidator(REG.check)` or inside a field_validator), so adding an entry needs no second list.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not registered; the message lists the registered ones."""


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """`REG.register(name, obj)`, or `@REG.register(name)` as a decorator; a name registers once."""
        def add(o: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = o
            return o

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}") from None

    def check(self, name: str) -> str:
        """`name` if registered, else UnknownName: the validator configs use for their allowed values."""
        self.get(name)
        return name

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
