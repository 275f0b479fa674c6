"""Model folders and training checkpoints, in safetensors and JSON only: nothing is ever unpickled.

A model folder (what ``save_pretrained`` writes, ``build_model(spec, checkpoint=dir)`` reads):

    config.json         {"name", "variant", "options", ...}: enough to rebuild the architecture
    model.safetensors   the state dict

A training checkpoint is a model folder plus:

    trainer_state.safetensors   optimizer state tensors, keyed "state.<param index>.<name>"
    trainer.json                step, epoch, optimizer hyper-parameters, RNG states as plain lists,
                                the resolved recipe and its hash

A run keeps its checkpoints under ``checkpoints/step-XXXXXXXX/`` and names the newest one in
``checkpoints/latest``. Each checkpoint is written to a temporary folder and renamed into place
and ``latest`` is replaced atomically, so an interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from cirbench import files
from cirbench.data.schema import DataError

MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
TRAINER_STATE = "trainer_state.safetensors"
TRAINER_JSON = "trainer.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes), cached until a tensor changes.

    In-place updates (optimizer steps, ``load_state_dict``) bump a tensor's version counter, which
    is part of the cache key, so a trained model never reports its untrained hash.
    """
    state = module.state_dict()
    key = tuple((name, tensor.data_ptr(), tensor._version) for name, tensor in state.items())
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


def write_json_atomic(path: Path, data: Any) -> None:
    files.write_json_atomic(path, data, sort_keys=True)


def write_model_folder(module: nn.Module, directory: str | Path, config: dict[str, Any]) -> Path:
    """Write config.json and model.safetensors (shared tensors stored once)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with files.replacing(directory / MODEL_WEIGHTS) as tmp:
        save_model(module, str(tmp))
    write_json_atomic(directory / MODEL_CONFIG, config)
    return directory


def stamp_config_hash(directory: str | Path, recipe_hash: str) -> None:
    """Record the training recipe's hash in a model folder's config.json (results cite it)."""
    path = Path(directory) / MODEL_CONFIG
    write_json_atomic(path, {**json.loads(path.read_text()), "config_hash": recipe_hash})


def read_model_config(directory: str | Path, expected_name: str) -> dict[str, Any]:
    """config.json of a model folder, checked to belong to model ``expected_name``."""
    path = Path(directory) / MODEL_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "checkpoint", "no config.json: not a model folder written by save_pretrained") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, "checkpoint", f"config.json is not valid JSON ({exc})") from None
    if config.get("name") != expected_name:
        raise DataError(path, "name", f"checkpoint of model {config.get('name')!r}, not {expected_name!r}")
    return config


def load_model_weights(module: nn.Module, directory: str | Path) -> None:
    """Load model.safetensors into ``module``; every tensor must match by name and shape."""
    path = Path(directory) / MODEL_WEIGHTS
    if not path.is_file():
        raise DataError(path, "checkpoint", "model.safetensors is missing")
    try:
        load_model(module, str(path), strict=True, device=str(_device_of(module)))
    except (RuntimeError, SafetensorError) as exc:
        raise DataError(path, "state dict", f"does not fit this model ({exc})") from None


def save_training_checkpoint(
    run_dir: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer: dict[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write checkpoints/step-XXXXXXXX (model folder + optimizer + trainer.json), point ``latest``
    at it and delete all but the ``keep`` newest checkpoints."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{trainer['step']:08d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors, optimizer_meta = _split_optimizer_state(optimizer.state_dict())
    save_file(tensors, str(tmp / TRAINER_STATE))
    write_json_atomic(tmp / TRAINER_JSON, {**trainer, "optimizer": optimizer_meta})
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_json_atomic(root / LATEST, {"checkpoint": name})
    _prune(root, keep)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    pointer = Path(run_dir) / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    directory = pointer.parent / json.loads(pointer.read_text())["checkpoint"]
    if not (directory / TRAINER_JSON).is_file():
        raise DataError(pointer, "checkpoint", f"names {directory.name}, which is missing or incomplete")
    return directory


def load_training_checkpoint(
    directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model weights and optimizer state from a checkpoint; return its trainer.json."""
    directory = Path(directory)
    trainer = json.loads((directory / TRAINER_JSON).read_text())
    load_model_weights(model, directory)
    tensors = load_file(str(directory / TRAINER_STATE))
    optimizer.load_state_dict(_join_optimizer_state(tensors, trainer["optimizer"]))
    return trainer


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch's optimizer state dict -> (tensors for safetensors, the JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(index): dict(values) for index, values in meta["scalars"].items()}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def _prune(root: Path, keep: int) -> None:
    checkpoints = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in checkpoints[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.state_dict().values():
        return tensor.device
    return torch.device("cpu")
