"""Multi-GPU training through torchrun: process-group set-up and the cross-rank gathers that
in-batch losses need.

Launched as a plain process (not by torchrun) there is no process group and every helper is the
identity, so models call them unconditionally. Under torchrun there is a group, even of one rank
(``--nproc-per-node 1``: the collectives, DDP and NCCL then run for real, as on eight GPUs). Under torchrun each rank encodes its own slice of the global
batch; an in-batch loss then scores its queries against the targets of *all* ranks, gathered with
``gather_with_grad`` so the gradient still reaches the rank that encoded each target.

The process group's backend follows the device (NCCL for CUDA, gloo for CPU) unless the caller or
``$CIRBENCH_DIST_BACKEND`` names one. NCCL reduces only CUDA tensors: every tensor handed to a
collective here must live on the model's device (the callers create them there). All collectives
go through the module attribute ``dist``, so a test can put a checking stand-in in its place.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.distributed as dist

BACKEND_ENV = "CIRBENCH_DIST_BACKEND"


def launched_with_torchrun() -> bool:
    """torchrun (or any env:// launcher) set this process's rank, world size and rendezvous address."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def default_backend(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo otherwise; ``$CIRBENCH_DIST_BACKEND`` overrides both."""
    return os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo")


def setup(device: str | torch.device = "cpu", backend: str | None = None) -> torch.device:
    """This process's device; joins the process group first when launched by torchrun.

    Under torchrun a ``cuda`` device becomes ``cuda:LOCAL_RANK`` (one GPU per rank; an explicit
    ``cuda:N`` is refused there). ``backend`` defaults to ``default_backend(device)``. Calling it
    again (a recipe run, then the loop) returns the same device and keeps the group.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if launched_with_torchrun():
            if device.index is not None and device.index != local_rank():
                raise ValueError(f"under torchrun each rank uses cuda:LOCAL_RANK; got {device} on local rank {local_rank()}")
            device = torch.device("cuda", local_rank())
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)  # NCCL and all_gather_object use the current device
    if launched_with_torchrun() and not is_initialized():
        dist.init_process_group(backend=backend or default_backend(device))
    return device


def teardown() -> None:
    if is_initialized():
        dist.destroy_process_group()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [B, ...] of every rank in rank order -> [world * B, ...].

    Differentiable: the backward pass sends each slice's gradient back to the rank that made it.
    """
    if not is_initialized():
        return x
    return torch.cat(_differentiable_all_gather(x.contiguous()), dim=0)


def _differentiable_all_gather(x: torch.Tensor) -> Sequence[torch.Tensor]:
    from torch.distributed.nn.functional import all_gather

    return all_gather(x)


def gather_strings(items: Sequence[str]) -> list[str]:
    """Concatenate a list of strings (e.g. target ids) of every rank in rank order."""
    if not is_initialized():
        return list(items)
    gathered: list[list[str] | None] = [None] * world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part or []]


def local_offset(local_batch: int) -> int:
    """Index of this rank's first row in a tensor made by ``gather_with_grad`` (equal batches)."""
    return rank() * local_batch


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks, for logging the same loss on every rank. ``value``
    must be on the model's device (NCCL has no CPU tensors)."""
    if not is_initialized():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if is_initialized():
        dist.barrier()
