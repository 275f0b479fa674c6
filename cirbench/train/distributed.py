"""Multi-GPU training through torchrun: process-group set-up and the cross-rank gathers that
in-batch losses need.

Launched as one process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) every helper is the identity, so
models call them unconditionally. Under torchrun each rank encodes its own slice of the global
batch; an in-batch loss then scores its queries against the targets of *all* ranks, gathered with
``gather_with_grad`` so the gradient still reaches the rank that encoded each target.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.distributed as dist


def launched_with_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def setup() -> torch.device:
    """Join the process group when launched by torchrun; return this process's device."""
    cuda = torch.cuda.is_available()
    if launched_with_torchrun() and not is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if not cuda:
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def teardown() -> None:
    if is_initialized():
        dist.destroy_process_group()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [B, ...] of every rank in rank order -> [world * B, ...].

    Differentiable: the backward pass sends each slice's gradient back to the rank that made it.
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather_strings(items: Sequence[str]) -> list[str]:
    """Concatenate a list of strings (e.g. target ids) of every rank in rank order."""
    if world_size() == 1:
        return list(items)
    gathered: list[list[str] | None] = [None] * world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part or []]


def local_offset(local_batch: int) -> int:
    """Index of this rank's first row in a tensor made by ``gather_with_grad`` (equal batches)."""
    return rank() * local_batch


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks, for logging the same loss on every rank."""
    if world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()
