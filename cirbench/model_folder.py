"""Model folders: the one on-disk format of every model of the zoo, and the one hash of its weights.

Every model's ``save_pretrained(directory)`` writes one, ``build_model(spec, checkpoint=directory)``
reads it back, training writes one as ``final/`` (and inside each checkpoint), and the importers
(``cirbench import-weights``) write theirs through the models' own ``save_pretrained``:

    config.json         {"format": "cirbench-model/2",
                         "name": registry name, "variant": registry variant (the spec is name:variant),
                         "options": the model's build options (its dataclass in baselines/options.py),
                         "trained_on": datasets seen in training, in order,
                         "config_hash": the training recipe's hash (written by training only)}
    model.safetensors   the whole state dict, backbone included (shared tensors stored once);
                        loaded strictly: every tensor must match by name and shape
    + the family's structure files, enough to rebuild the architecture offline, without weights:
      BLIP-2 family (fashionblip2, sprc)   backbone/: transformers' Blip2Config + the tokenizer
      CLIP family (clip4cir, clip_*)       open_clip_config.json: open_clip's local-dir config

Nothing is unpickled. Folders written before this format still load: ``cirbench-model/1`` (the
BLIP-2 family's, with ``model`` for ``name``) and the CLIP family's unversioned config.json (with
``trained_on`` among its options) are read as the current format; a folder of an unknown format
is refused with what to do.

The weights' identity is ``state_dict_sha256``: sha256 over the state dict in name order (name,
dtype, shape, then the raw bytes of each tensor). Features cached under a hash are valid for the
same weights; results name the checkpoint by it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirbench import files
from cirbench.config import read_section
from cirbench.errors import DataError

if TYPE_CHECKING:
    from torch import nn

FORMAT = "cirbench-model/2"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
_OLD_BLIP2_FORMAT = "cirbench-model/1"


def state_dict_sha256(module: "nn.Module") -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes), cached until a tensor changes.

    In-place updates (optimizer steps, ``load_state_dict``) bump a tensor's version counter, which
    is part of the cache key, so a trained model never reports its untrained hash.
    """
    import torch

    state = module.state_dict()
    key = _fingerprint(state)
    cached = module.__dict__.get("_state_sha256")
    if cached and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    module.__dict__["_state_sha256"] = (key, digest.hexdigest())
    return digest.hexdigest()


def keep_state_hash(module: "nn.Module", digest: str) -> None:
    """Let ``module`` keep reporting ``digest`` for its current tensors (e.g. after holding frozen
    weights in bf16 for evaluation: results name the checkpoint as loaded, not the cast)."""
    module.__dict__["_state_sha256"] = (_fingerprint(module.state_dict()), digest)


def _fingerprint(state: dict) -> tuple:
    return tuple((name, tensor.data_ptr(), tensor._version) for name, tensor in state.items())


def write_model_folder(module: "nn.Module", directory: str | Path, options: Any = None) -> Path:
    """Write config.json (format, ``module.meta``'s name, variant and trained_on, ``options``) and
    model.safetensors; the family's structure files are the caller's.

    Args:
        module: the model (``meta``: name, variant, trained_on).
        directory: the folder (made if missing; files replaced atomically).
        options: the build options, a dataclass or a mapping (None: none).
    """
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if dataclasses.is_dataclass(options):
        options = dataclasses.asdict(options)
    meta = module.meta
    config = {"format": FORMAT, "name": meta.name, "variant": meta.variant, "options": dict(options or {}),
              "trained_on": list(meta.trained_on)}
    with files.replacing(directory / MODEL_WEIGHTS) as tmp:
        save_model(module, str(tmp))
    files.write_json_atomic(directory / MODEL_CONFIG, config, sort_keys=True)
    return directory


def read_model_folder(directory: str | Path, name: str | None = None, variant: str | None = None) -> dict[str, Any]:
    """config.json of a model folder, in the current format, checked against ``name`` and ``variant``.

    Args:
        directory: the model folder.
        name: the registry name it must hold (None: any).
        variant: the variant it must hold (None: any).

    Raises ``DataError`` naming config.json: missing, not JSON, an unknown format, another model.
    """
    path = Path(directory) / MODEL_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "checkpoint", "no config.json: not a model folder (save_pretrained or training writes one)") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, "checkpoint", f"config.json is not readable JSON ({exc})") from None
    config = _current_format(config, path)
    if name is not None and config["name"] != name:
        raise DataError(path, "name", f"a model folder of {config['name']!r}, not {name!r}")
    if variant is not None and config["variant"] != variant:
        raise DataError(path, "variant", f"holds {config['name']}:{config['variant']}; evaluate or train it as "
                        f"{config['name']}:{config['variant']}, not {name or config['name']}:{variant}")
    return config


def _current_format(config: Any, path: Path) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise DataError(path, "checkpoint", "config.json must hold a JSON object")
    fmt = config.get("format")
    if fmt == _OLD_BLIP2_FORMAT and "model" in config:
        config = {**{k: v for k, v in config.items() if k != "model"}, "name": config["model"], "format": FORMAT}
    elif fmt is None and "name" in config:  # the CLIP family's first folders: trained_on among the options
        options = dict(config.get("options") or {})
        trained_on = options.pop("trained_on", config.get("trained_on", []))
        config = {**config, "format": FORMAT, "options": options, "trained_on": trained_on}
    elif fmt != FORMAT:
        raise DataError(path, "format", f"unknown model-folder format {fmt!r} (this cirbench reads {FORMAT}): "
                        "written by a newer cirbench? Upgrade cirbench, or re-export the folder with the cirbench that wrote it")
    for key in ("name", "variant"):
        if not isinstance(config.get(key), str):
            raise DataError(path, key, "missing: not a model folder written by save_pretrained")
    return {"options": {}, "trained_on": [], **config}


def folder_spec(directory: str | Path) -> str:
    """The ``name:variant`` spec a model folder holds."""
    config = read_model_folder(directory)
    return f"{config['name']}:{config['variant']}"


def read_options(options_cls: type, overrides: dict[str, Any], folder_config: dict[str, Any] | None = None,
                 directory: str | Path | None = None) -> Any:
    """A model's build options: ``overrides`` over the folder's recorded options (or the defaults).

    Both are read by the one section validator: a bad override is named as ``model.overrides.<key>``,
    a bad recorded option as ``options.<key>`` of the folder's config.json.
    """
    checked = read_section(options_cls, overrides, "model options", "model.overrides")
    if folder_config is None:
        return checked
    source = Path(directory) / MODEL_CONFIG if directory is not None else MODEL_CONFIG
    return read_section(options_cls, {**folder_config["options"], **overrides}, source, "options")


def load_model_weights(module: "nn.Module", directory: str | Path) -> None:
    """Load model.safetensors into ``module``; every tensor must match by name and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(directory) / MODEL_WEIGHTS
    if not path.is_file():
        raise DataError(path, "checkpoint", "model.safetensors is missing")
    try:
        load_model(module, str(path), strict=True, device=str(_device_of(module)))
    except (RuntimeError, SafetensorError) as exc:
        raise DataError(path, "state dict", f"does not fit this model ({exc})") from None


def stamp_config_hash(directory: str | Path, recipe_hash: str) -> None:
    """Record the training recipe's hash in a model folder's config.json (results cite it)."""
    path = Path(directory) / MODEL_CONFIG
    files.write_json_atomic(path, {**json.loads(path.read_text()), "config_hash": recipe_hash}, sort_keys=True)


def folder_config_hash(directory: str | Path | None) -> str | None:
    """The recipe hash training stamped into a model folder, if any (None for no folder)."""
    if directory is None or not (Path(directory) / MODEL_CONFIG).is_file():
        return None
    value = read_model_folder(directory).get("config_hash")
    return str(value) if value else None


def _device_of(module: "nn.Module"):
    import torch

    for tensor in module.state_dict().values():
        return tensor.device
    return torch.device("cpu")
