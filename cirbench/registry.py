"""One strict registry for models, datasets, protocols and backends.

Entries are registered by name, either as objects or as lazy ``"module:attribute"`` strings that
are imported on first use, so listing names never imports torch. A duplicate name is an error and
an unknown name is an error that lists the close matches: a lookup never returns None.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or duplicate registry name. The message is meant for the user."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


def import_string(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr_path.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass
class Entry(Generic[T]):
    name: str
    target: T | str  # the object itself, or "module:attr" to import lazily
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def load(self) -> T:
        if isinstance(self.target, str):
            self.target = import_string(self.target)
        return self.target  # type: ignore[return-value]


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, target: T | str | None = None, *, description: str = "", **metadata: Any
    ) -> Any:
        """Register ``target`` under ``name``; without a target, works as a decorator."""
        if target is None:
            def decorator(obj: T) -> T:
                self.register(name, obj, description=description, **metadata)
                return obj
            return decorator
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, description, metadata)
        return target

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self._unknown_message(name)) from None

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(self._entries)) or "(none)"
        return f"unknown {self.kind} {name!r}.{hint} Known: {known}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        for name in self.names():
            yield self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


