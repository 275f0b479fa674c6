"""Versioned prompt files (package data). A build records each prompt's name and hash, so an edit
to a prompt is a new prompt: add ``<stage>_v<N+1>.txt`` rather than changing a released file."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Prompt:
    name: str  # file stem, e.g. "caption_v1"
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, **fields: str) -> str:
        """Fill ``{name}`` placeholders; values may contain braces (captions are free text)."""
        missing = set(_PLACEHOLDER.findall(self.text)) - set(fields)
        if missing:
            raise KeyError(f"prompt {self.name} needs {sorted(missing)}")
        return _PLACEHOLDER.sub(lambda m: fields[m.group(1)], self.text)

    def record(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


def load_prompt(name: str) -> Prompt:
    """A prompt shipped with the package, e.g. ``load_prompt("caption_v1")``."""
    files = resources.files(__name__)
    path = files / f"{name}.txt"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".txt") for p in files.iterdir() if p.name.endswith(".txt"))
        raise KeyError(f"unknown prompt {name!r}; shipped prompts: {', '.join(known)}")
    return Prompt(name, path.read_text(encoding="utf-8"))
