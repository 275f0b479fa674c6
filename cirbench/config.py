"""Recipes are YAML data: ``include:`` composes files, ``--set a.b=v`` overrides single keys.

An included file is resolved relative to the including file (or the package's ``recipes/``
folder for a bare name), then the including file's keys are merged over it, recursively for
mappings. The resolved config is hashed (sha256 of canonical JSON) and the hash travels with
every result and checkpoint made from it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from cirbench.data.schema import DataError


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


REPO_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_include(name: str, including: Path) -> Path:
    for candidate in (including.parent / name, REPO_RECIPES / name):
        if candidate.is_file():
            return candidate
    raise DataError(including, f"include: {name}", "no such recipe (looked beside the file and in recipes/)")


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file() and (REPO_RECIPES / path).is_file():
        path = REPO_RECIPES / path
    path = path.resolve()
    if path in _seen:
        raise DataError(path, "include", "include cycle: " + " -> ".join(p.name for p in (*_seen, path)))
    try:
        data = _load_yaml(path.read_text()) or {}
    except FileNotFoundError:
        raise DataError(path, "recipe", "file not found") from None
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


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> (["train", "lr"], 1e-4); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} must look like key.sub=value")
    return key.strip().split("."), _load_yaml(raw)


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {text!r}: {key!r} is not a mapping")
        node[keys[-1]] = value
    return config


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
