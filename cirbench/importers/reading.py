"""Reading upstream checkpoint files without executing anything they contain.

``.safetensors`` files are read as they are. Anything else is taken for a torch pickle (what
LAVIS, SPRC and CLIP4Cir save) and read with ``torch.load(weights_only=True)`` only: tensors and
plain containers load, any other object is refused with one line naming the file. A wrapper
around the state dict (``{"model": ...}``, ``{"CLIP": ...}``, see ``keymaps.STATE_DICT_WRAPPERS``)
is unwrapped; other top-level entries (epoch, optimizer, config) are ignored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cirbench.errors import DataError
from cirbench.importers.keymaps import STATE_DICT_WRAPPERS


@dataclass
class UpstreamState:
    """Upstream tensors by key, and the file each key came from (for error messages)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    origin: dict[str, Path] = field(default_factory=dict)

    def add(self, state: dict[str, torch.Tensor], path: Path, prefix: str = "") -> None:
        """Merge ``state`` (keys prefixed with ``prefix``); a key present in two files is an error."""
        for key, tensor in state.items():
            name = prefix + key
            if name in self.tensors:
                raise DataError(path, name, f"also in {self.origin[name]}: give each upstream key once")
            self.tensors[name] = tensor
            self.origin[name] = path

    def file_of(self, key: str) -> Path | str:
        return self.origin.get(key, "upstream checkpoint")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict held by one upstream file (.safetensors, or a torch pickle read with weights_only=True).

    Args:
        path: the file. Missing, unreadable, code-carrying or tensor-less files raise ``DataError``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file", "not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise DataError(path, "safetensors", f"cannot be read ({exc})") from None
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to parse an untrusted file is a refusal (garbage bytes raise KeyError)
        raise DataError(
            path, "torch pickle",
            "refused: it cannot be read with torch.load(weights_only=True), which loads only tensors and "
            f"plain containers (cirbench never unpickles other objects; {_unpickling_reason(exc)})",
        ) from None
    return _unwrap(content, path)


def _unpickling_reason(exc: Exception) -> str:
    """What torch's refusal says about the file (``Unsupported global: GLOBAL posix.system``), without its
    advice to retry with ``weights_only=False``, which is exactly what must not be done with such a file."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if line.startswith(("Unsupported", "Trying to"))]
    if named:
        return named[0][:200]
    plain = [line for line in lines if "weights_only" not in line and "torch.load" not in line and "issue" not in line]
    return (f"{type(exc).__name__}: {plain[0]}" if plain else type(exc).__name__)[:200]


def _unwrap(content: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict itself, or the one under the first wrapper key found; every value a tensor."""
    if not isinstance(content, dict):
        raise DataError(path, "content", f"a {type(content).__name__}, not a state dict (a dict of tensors)")
    wrapper = next((key for key in STATE_DICT_WRAPPERS if isinstance(content.get(key), dict)), None)
    state = content[wrapper] if wrapper else content
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            where = f"{wrapper}.{key}" if wrapper else str(key)
            raise DataError(
                path, where,
                f"a {type(value).__name__}, not a tensor: not a state dict, nor one wrapped under "
                f"{', '.join(STATE_DICT_WRAPPERS)}",
            )
    if not state:
        raise DataError(path, wrapper or "content", "no tensors")
    return state
