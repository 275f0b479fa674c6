"""Collectives get tensors on the model's device, and the backend follows the device.

NCCL has no CPU tensors: a tensor made without ``device=`` (so on the CPU) and handed to an
all-reduce fails at the first step on GPUs, and a CPU-only test run cannot see it. Here a
process-group stand-in (two ranks, this one rank 0) checks every tensor the training loop hands to
a collective, while a torch function mode marks the tensors made by a factory call without a
device (and whatever is computed from such tensors alone): the real training step path runs on
the CPU, and the stand-in refuses what NCCL would refuse on a GPU.
"""

from __future__ import annotations

import weakref

import pytest
import torch
from test_train_loop import TripletDataset, _fresh_model, _settings, _triplets
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from cirbench import distributed
from cirbench.train import loop

_FACTORIES = {torch.tensor, torch.as_tensor, torch.scalar_tensor, torch.zeros, torch.ones, torch.full, torch.empty,
              torch.arange, torch.linspace, torch.eye, torch.rand, torch.randn, torch.randint}


class UnplacedTensors(TorchFunctionMode):
    """Marks tensors made without a device: factory calls with no ``device=`` and results computed
    from marked tensors only. ``tensor.to(device)`` is a placement and clears the mark."""

    def __init__(self):
        super().__init__()
        self._marked: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def is_unplaced(self, tensor: torch.Tensor) -> bool:
        return self._marked.get(id(tensor)) is tensor

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func in _FACTORIES:
            unplaced = kwargs.get("device") is None and all(self.is_unplaced(t) for t in inputs)
        elif func in (torch.Tensor.to, torch.Tensor.cuda):
            placement = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (torch.device, str, int))]
            unplaced = not placement and bool(inputs) and self.is_unplaced(inputs[0])
        else:
            unplaced = bool(inputs) and all(self.is_unplaced(t) for t in inputs)
        if unplaced:
            for tensor in tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor):
                    self._marked[id(tensor)] = tensor
        return out


class StrictProcessGroup:
    """``torch.distributed`` as ``cirbench.distributed`` uses it: two ranks holding the same
    values, this process rank 0; like NCCL, a collective refuses a tensor that is not on the
    training device, and a tensor made without a device."""

    def __init__(self, device: torch.device, unplaced: UnplacedTensors):
        self.device, self.unplaced, self.calls = torch.device(device), unplaced, []

    def check(self, name: str, tensor: torch.Tensor) -> None:
        self.calls.append(name)
        if tensor.device != self.device:
            raise RuntimeError(f"{name}: a tensor on {tensor.device}, the model is on {self.device}")
        if self.unplaced.is_unplaced(tensor):
            raise RuntimeError(f"{name}: a tensor made without a device (on the CPU while the model is on the GPU)")

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self) -> int:
        return 2

    def get_rank(self) -> int:
        return 0

    def all_reduce(self, tensor: torch.Tensor, op=None) -> None:
        self.check("all_reduce", tensor)
        tensor.mul_(2)  # the other rank holds the same values

    def all_gather_object(self, out: list, obj) -> None:
        self.calls.append("all_gather_object")
        out[:] = [obj, obj]

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        self.check("all_gather", tensor)
        return [tensor, tensor]

    def barrier(self) -> None:
        self.calls.append("barrier")


DEVICES = [torch.device("cpu")] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES, ids=str)
def strict_group(monkeypatch, request):
    """The stand-in in place of torch.distributed, inside the unplaced-tensor mode, for each device
    there is (on a GPU machine the device check is the real one)."""
    unplaced = UnplacedTensors()
    group = StrictProcessGroup(request.param, unplaced)
    monkeypatch.setattr(distributed, "dist", group)
    monkeypatch.setattr(distributed, "_differentiable_all_gather", group.all_gather)
    monkeypatch.setattr(distributed, "launched_with_torchrun", lambda: False)  # the group "exists" already
    # DDP's own gradient all-reduce is torch's (it places its buckets with the parameters); the
    # stand-in cannot carry it, so the module goes unwrapped.
    monkeypatch.setattr(loop, "_wrap_ddp", lambda module, device: module)
    with unplaced:
        yield group


def test_the_training_step_hands_collectives_only_tensors_on_the_model_device(strict_group, tmp_path):
    model = _fresh_model(dropout=0.0)
    dataset = TripletDataset(_triplets(tmp_path, 16), model.preprocess, seed=1)
    result = loop.train(model, dataset, _settings(steps=2, grad_accum=2), tmp_path / "run", progress=False,
                        device=strict_group.device)
    assert all(p.device == strict_group.device for p in model.parameters())
    assert result.steps == 2
    assert {"all_reduce", "all_gather", "all_gather_object", "barrier"} <= set(strict_group.calls)


def test_the_stand_in_refuses_a_tensor_made_without_a_device(strict_group):
    """The check can fail: the bug of the first GPU run (a loss value re-wrapped with
    torch.tensor(value) before the all-reduce) is refused, the placed tensor is not."""
    with pytest.raises(RuntimeError, match="without a device"):
        distributed.all_reduce_mean(torch.tensor(1.5))
    placed = torch.tensor(1.5, device=strict_group.device)
    assert float(distributed.all_reduce_mean(placed)) == 1.5
    with pytest.raises(RuntimeError, match="without a device"):
        distributed.gather_with_grad(torch.zeros(2, 3))


def test_the_backend_follows_the_device_and_can_be_named(monkeypatch):
    monkeypatch.delenv(distributed.BACKEND_ENV, raising=False)
    assert distributed.default_backend(torch.device("cuda", 0)) == "nccl"
    assert distributed.default_backend(torch.device("cpu")) == "gloo"
    monkeypatch.setenv(distributed.BACKEND_ENV, "gloo")
    assert distributed.default_backend(torch.device("cuda", 0)) == "gloo"


def test_one_process_is_not_a_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup("cpu") == torch.device("cpu") and not distributed.is_initialized()
    value = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(value) is value and distributed.gather_strings(["a"]) == ["a"]
