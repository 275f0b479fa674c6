"""Training checkpoints, in safetensors and JSON only: nothing is ever unpickled.

A training checkpoint is a model folder (``cirbench.model_folder``: what ``save_pretrained``
writes) plus:

    trainer_state.safetensors   optimizer state tensors, keyed "state.<param index>.<name>"
    trainer.json                step, epoch, optimizer hyper-parameters, RNG states as plain lists,
                                the resolved recipe and its hash

A run keeps its checkpoints under ``checkpoints/step-XXXXXXXX/`` and names the newest one in
``checkpoints/latest``. Each checkpoint is written to a temporary folder and renamed into place
and ``latest`` is replaced atomically, so an interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cirbench import files
from cirbench.errors import DataError
from cirbench.model_folder import load_model_weights

TRAINER_STATE = "trainer_state.safetensors"
TRAINER_JSON = "trainer.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"


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
    files.write_json_atomic(tmp / TRAINER_JSON, {**trainer, "optimizer": optimizer_meta}, sort_keys=True)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    files.write_json_atomic(root / LATEST, {"checkpoint": name}, sort_keys=True)
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
