"""Recipes are YAML data: ``include:`` composes files, ``--set a.b=v`` overrides single keys,
and ``read_section`` is the one validator of a config section.

A recipe is a file path, or the name of a shipped recipe (``fashionblip2/stage1_facap_tiny``,
with or without ``.yaml`` or a leading ``recipes/``): the shipped recipes are package data
(``cirbench.recipes``, read through importlib.resources), so names work from any folder and from
an installed wheel. An included file is resolved relative to the including file (or among the
shipped recipes), then the including file's keys are merged over it, recursively for mappings. The resolved config is hashed (sha256 of canonical JSON) and the hash travels with
every result and checkpoint made from it.

``read_section(cls, data, source, section)`` turns one mapping of a config (a recipe section, a
model's build options) into the dataclass ``cls`` that describes it, or stops with one
``DataError`` naming the file and the dotted key: unknown keys, missing keys, wrong types (read
from the fields' annotations; nothing is coerced: ``"64"`` is not an integer, ``cir`` is not a
list) and values out of range (``field(metadata=at_least(1))``, ``greater_than(0)``, ...). A
dataclass checks what spans several fields in ``__post_init__`` by raising ``SectionError``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from cirbench.errors import DataError


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float: YAML 1.1 wants ``1.0e-4`` and would
    otherwise hand a learning rate over as the string "1e-4"."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


RECIPES_PACKAGE = "cirbench.recipes"


def shipped_recipes() -> Path:
    """The folder of the shipped recipes (the installed ``cirbench.recipes`` package)."""
    from importlib import resources

    return Path(str(resources.files(RECIPES_PACKAGE)))


def shipped_recipe_names() -> list[str]:
    """Every shipped recipe by name (``fashionblip2/stage1_facap_tiny``), shared pieces included."""
    root = shipped_recipes()
    return sorted(str(path.relative_to(root).with_suffix("")) for path in root.rglob("*.yaml"))


def resolve_recipe(recipe: str | Path) -> Path:
    """The file of a recipe given as a path or as the name of a shipped recipe.

    Raises ``DataError`` naming what was looked for, with the closest shipped names."""
    path = Path(recipe)
    if path.is_file():
        return path.resolve()
    name = str(recipe).replace("\\", "/")
    name = name[len("recipes/"):] if name.startswith("recipes/") else name
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    shipped = shipped_recipes() / f"{name}.yaml"
    if shipped.is_file():
        return shipped.resolve()
    close = difflib.get_close_matches(name, shipped_recipe_names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else " (list them: the recipes/ folder of the package)"
    raise DataError(recipe, "recipe", f"no such file, and no shipped recipe named {name!r}{hint}")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_include(name: str, including: Path) -> Path:
    for candidate in (including.parent / name, shipped_recipes() / name):
        if candidate.is_file():
            return candidate
    raise DataError(including, f"include: {name}", "no such recipe (looked beside the file and among the shipped recipes)")


def load_recipe(recipe: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe (a file path, or a shipped recipe's name) with its includes merged.

    Raises ``DataError`` naming the file: not found, not YAML, not a mapping, an include cycle."""
    path = resolve_recipe(recipe)
    if path in _seen:
        raise DataError(path, "include", "include cycle: " + " -> ".join(p.name for p in (*_seen, path)))
    try:
        data = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(path, "recipe", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(path, "recipe", "the top level must be a mapping")
    includes = data.pop("include", []) or []
    includes = [includes] if isinstance(includes, str) else includes
    merged: dict[str, Any] = {}
    for name in includes:
        merged = deep_merge(merged, load_recipe(_resolve_include(name, path), (*_seen, path)))
    return deep_merge(merged, data)


def parse_override(text: str, source: str | Path = "--set") -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> (["train", "lr"], 1e-4); the value is parsed as YAML.

    A malformed override (no ``=``, an empty key part, a value that is not YAML) is a ``DataError``
    naming ``source`` (the recipe it applies to) and the override."""
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(part.strip() for part in keys):
        raise DataError(source, f"--set {text}", "must look like key.sub=value (e.g. train.lr=1e-4)")
    try:
        return [part.strip() for part in keys], _load_yaml(raw)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise DataError(source, f"--set {text}", f"the value is not valid YAML ({problem})") from None


def apply_overrides(config: dict[str, Any], overrides: list[str], source: str | Path = "--set") -> dict[str, Any]:
    """A copy of ``config`` with each ``key.sub=value`` override applied (missing mappings are made).

    Args:
        config: the resolved recipe (left unchanged).
        overrides: ``--set`` texts, applied in order.
        source: the recipe's file, named in errors.
    """
    config = copy.deepcopy(config)
    for text in overrides:
        keys, value = parse_override(text, source)
        node = config
        for depth, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if node is None:  # a section set to null (e.g. `eval: null`) gets keys again
                node = _parent(config, keys[: depth + 1])[key] = {}
            if not isinstance(node, dict):
                raise DataError(source, f"--set {text}", f"{'.'.join(keys[: depth + 1])} is not a mapping")
        node[keys[-1]] = value
    return config


def _parent(config: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    node = config
    for key in keys[:-1]:
        node = node[key]
    return node


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs (nested dicts compared key by key)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def config_hash(config: dict[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---- the one config-section validator --------------------------------------------------------

T = TypeVar("T")


class SectionError(ValueError):
    """Raised by a section dataclass's ``__post_init__``: ``key`` (relative to the section) is wrong.

    ``read_section`` turns it into a ``DataError`` naming the file and the dotted key; built
    directly in Python, the dataclass raises it as a plain ``ValueError``."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def at_least(minimum: float) -> dict[str, float]:
    """Field metadata: the value (when not null) must be >= ``minimum``."""
    return {"min": minimum}


def greater_than(bound: float) -> dict[str, float]:
    """Field metadata: the value (when not null) must be > ``bound``."""
    return {"gt": bound}


def between(low: float, high: float, *, low_open: bool = False) -> dict[str, Any]:
    """Field metadata: ``low <= value <= high`` (``low < value`` with ``low_open``)."""
    return {"gt" if low_open else "min": low, "max": high}


def read_section(cls: type[T], data: Any, source: str | Path, section: str) -> T:
    """The one validator of a config section: ``data`` (a mapping read from YAML or JSON) -> ``cls``.

    Args:
        cls: a dataclass; its fields are the section's keys, their annotations the accepted types
            (bool, int, float, str, Literal, Optional, tuple[X, ...], tuple[X, Y], list[X],
            dict[str, X], Any, nested dataclasses), their ``metadata`` the accepted range.
        data: the section as read (None reads as an empty mapping).
        source: the file it came from, named in every error.
        section: the section's dotted name (``train``, ``model.overrides``), prefixed to keys in errors.

    Raises ``DataError(source, "<section>.<key>", problem)`` on the first unknown key (with close
    matches), missing key, wrong type or value out of range; an int is accepted where a float is
    asked, nothing else is converted.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataError(source, section, f"must be a mapping of keys, got {_shown(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise DataError(source, _key(section, key), f"unknown key{hint}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in fields.items():
        if name in data:
            values[name] = _checked(data[name], hints[name], source, _key(section, name), spec.metadata)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise DataError(source, _key(section, name), "missing")
    try:
        return cls(**values)
    except SectionError as exc:
        raise DataError(source, _key(section, exc.key), exc.problem) from None


def _key(section: str, key: str) -> str:
    return f"{section}.{key}" if section else str(key)


def _checked(value: Any, hint: Any, source: str | Path, where: str, metadata: Any = None) -> Any:
    """``value`` checked against the type ``hint`` (and the range in ``metadata``), as the field holds it."""
    ok, converted = _matches(value, hint, source, where)
    if not ok:
        raise DataError(source, where, f"must be {_describe(hint)}, got {_shown(value)}")
    _check_range(converted, metadata or {}, source, where)
    return converted


def _matches(value: Any, hint: Any, source: str | Path, where: str) -> tuple[bool, Any]:
    """(whether ``value`` is of type ``hint``, the value as the field holds it)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if hint is type(None):
        return value is None, value
    if origin in (Union, types.UnionType):
        for option in args:
            ok, converted = _matches(value, option, source, where)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return any(value == option and type(value) is type(option) for option in args), value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            return False, value
        return True, read_section(hint, value, source, where)
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):  # YAML's .inf / .nan: no setting here means "unbounded"
            raise DataError(source, where, f"must be a finite number, got {value}")
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, value
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                return False, value
            items = [_checked(item, arg, source, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(value, args))]
        else:
            item_hint = args[0] if args else Any
            items = [_checked(item, item_hint, source, f"{where}[{i}]") for i, item in enumerate(value)]
        return True, tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            return False, value
        value_hint = args[1] if len(args) == 2 else Any
        return True, {key: _checked(item, value_hint, source, f"{where}.{key}") for key, item in value.items()}
    raise TypeError(f"read_section cannot check the annotation {hint!r} of {where}")


def _check_range(value: Any, metadata: Any, source: str | Path, where: str) -> None:
    if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    # `not (value >= x)` also refuses NaN
    if "min" in metadata and not value >= metadata["min"]:
        raise DataError(source, where, f"must be at least {metadata['min']}, got {value}")
    if "gt" in metadata and not value > metadata["gt"]:
        raise DataError(source, where, f"must be greater than {metadata['gt']}, got {value}")
    if "max" in metadata and not value <= metadata["max"]:
        raise DataError(source, where, f"must be at most {metadata['max']}, got {value}")


def _describe(hint: Any) -> str:
    """``hint`` in words, for messages: "an integer", "a list of strings", "one of 'fp32', 'bf16'"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(option) for option in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(option) for option in args)
    if origin in (tuple, list):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} items ({', '.join(_describe(arg) for arg in args)})"
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null", Any: "a value"}.get(hint, str(hint))


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, _describe(hint) + " items")


def _shown(value: Any) -> str:
    kind = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
    text = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return "null" if value is None else f"{text} ({kind})"
