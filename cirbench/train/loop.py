"""The one training loop, for every model of the zoo (through ``TrainableCIRModel``).

AdamW over the parameters the stage leaves trainable (no weight decay on biases and norms),
gradient accumulation, bf16 autocast on CUDA, gradient checkpointing when the model offers it,
the device the caller names (``cirbench.devices`` is the CLI's rule; under torchrun ``cuda`` is
``cuda:LOCAL_RANK``), DistributedDataParallel under torchrun, a rich progress bar, one line per
epoch (with validation when a validator is given), and checkpoints in safetensors
(``cirbench.train.checkpoint``).

Resuming gives the same result as an uninterrupted run: the data order and the text
randomisation are functions of (seed, epoch, index) (``cirbench.train.data``), torch's RNG
(dropout) is re-seeded from (seed, step, micro-step, rank) before every forward pass (inside
``fork_rng``: the caller's RNG state is left alone), the learning rate is a torch scheduler's
function of the step (``cirbench.train.schedule``), and a checkpoint holds the weights, the
optimizer and scheduler states and the global Python / NumPy RNG states.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cirbench.config import changed_keys, config_hash
from cirbench.errors import DataError
from cirbench.interface import check_training
from cirbench.progress import progress_bar
from cirbench import distributed
from cirbench.model_folder import stamp_config_hash
from cirbench.train.checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from cirbench.train.data import BatchPlan, TripletDataset, step_loader
from cirbench.train.recipe import TrainSettings
from cirbench.train.schedule import make_scheduler

FINAL = "final"
LOG_FILE = "log.jsonl"


@dataclass
class TrainResult:
    final_dir: Path | None  # None on ranks other than 0
    steps: int
    epochs: list[dict[str, Any]]  # the per-epoch lines, as logged


Validator = Callable[[nn.Module], dict[str, float]]
StepHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class _Hooks:
    validate: Validator | None
    validate_every: int
    on_step: StepHook | None


class _Losses(nn.Module):
    """Routes ``forward`` to ``training_losses`` so DistributedDataParallel sees the pass."""

    def __init__(self, model: nn.Module, tasks: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.tasks = tasks

    def forward(self, batch):
        return self.model.training_losses(batch, self.tasks)


def train(
    model: nn.Module,
    dataset: TripletDataset,
    settings: TrainSettings,
    run_dir: str | Path,
    *,
    config: dict[str, Any] | None = None,
    resume: bool = False,
    validate: Validator | None = None,
    validate_every: int = 1,
    on_step: StepHook | None = None,
    progress: bool = True,
    dataset_name: str = "",
    device: str | torch.device = "cpu",
    backend: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset``; checkpoints under ``run_dir``, the final model in ``run_dir/final``.

    Args:
        model: a ``TrainableCIRModel`` (an ``nn.Module``).
        dataset: the training triplets, preprocessed by the model.
        settings: the recipe's ``train:`` section (stage, tasks, length, batch, optimizer, schedule...).
        run_dir: the run folder (checkpoints/, final/, log.jsonl).
        config: the resolved recipe, stored with every checkpoint (its hash must match to resume);
            None: the settings alone.
        resume: continue from the run folder's latest checkpoint (the same weights as an
            uninterrupted run); without it a run folder holding checkpoints is refused.
        validate: ``validate(model) -> metrics``, run every ``validate_every`` epochs and after the last step.
        validate_every: epochs between validations.
        on_step: ``on_step(step, losses)`` after each optimizer step (1-based step).
        progress: show the progress bar.
        dataset_name: added to the model's ``meta.trained_on``.
        device: ``cpu``, ``cuda``, ``cuda:N``; under torchrun ``cuda`` means ``cuda:LOCAL_RANK``.
        backend: the process group's backend under torchrun (default: NCCL for CUDA, gloo for CPU,
            see ``distributed.setup``).
    """
    run_dir = Path(run_dir)
    config = config if config is not None else {"train": _jsonable(asdict(settings))}
    device = distributed.setup(device, backend)
    prepare_model(model, settings, device)
    optimizer = make_optimizer(model, settings)
    plan = BatchPlan(len(dataset), settings.batch_size, settings.grad_accum,
                     distributed.world_size(), distributed.rank(), settings.seed)
    total = settings.total_steps(plan.steps_per_epoch)
    hooks = _Hooks(validate, validate_every, on_step)
    runner = _Runner(model, optimizer, settings, plan, total, device, run_dir, config, hooks)
    start = _start_step(run_dir, model, optimizer, runner.stepper.scheduler, config, resume)
    _mark_trained_on(model, dataset_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), progress_bar(progress, quiet=not distributed.is_main_process()) as bar:
        runner.run(dataset, start, bar)
    final_dir = _save_final(model, run_dir, config) if distributed.is_main_process() else None
    distributed.barrier()
    return TrainResult(final_dir, total, runner.epoch_lines)


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and norm weights (1-d) get no weight decay."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"stage {settings.stage!r} leaves no trainable parameter in {model.meta.spec}")
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr,
                             betas=settings.betas, eps=settings.eps)


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    digest = hashlib.sha256(f"dropout/{seed}/{step}/{micro}/{rank}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def prepare_model(model: nn.Module, settings: TrainSettings, device: torch.device) -> None:
    """Check stage and tasks against the model, freeze for the stage, move to ``device``."""
    check_training(model, settings.stage, settings.tasks)
    model.set_trainable(settings.stage)
    if settings.grad_checkpointing:
        enable_grad_checkpointing(model)
    model.to(device)


def enable_grad_checkpointing(model: nn.Module) -> None:
    """The interface's ``set_grad_checkpointing(True)`` (open_clip's and timm's name for it)."""
    if not hasattr(model, "set_grad_checkpointing"):
        raise ValueError(f"{model.meta.spec} does not support gradient checkpointing")
    model.set_grad_checkpointing(True)


def _start_step(run_dir: Path, model: nn.Module, optimizer, scheduler, config: dict, resume: bool) -> int:
    checkpoint = latest_checkpoint(run_dir)
    if not resume:
        if checkpoint is not None:
            raise DataError(run_dir, "checkpoints", "already holds a training run: pass --resume to "
                            "continue it, or choose another output folder")
        return 0
    if checkpoint is None:
        raise DataError(run_dir, "--resume", "no checkpoint to resume from")
    trainer = load_training_checkpoint(checkpoint, model, optimizer)
    if trainer["config_hash"] != config_hash(config):
        raise DataError(checkpoint / "trainer.json", "config_hash",
                        "this checkpoint was made with another recipe (or other --set values); "
                        f"differs in: {', '.join(changed_keys(trainer['config'], config)) or 'unknown'}")
    _restore_scheduler(scheduler, trainer, int(trainer["step"]))
    random.setstate(_tuples(trainer["rng"]["python"]))
    np.random.set_state(tuple(trainer["rng"]["numpy"]))
    return int(trainer["step"])


def _restore_scheduler(scheduler, trainer: dict[str, Any], step: int) -> None:
    """The scheduler as the checkpoint left it; a checkpoint written before the loop stored it is
    caught up by stepping (every lr here is a function of the step alone)."""
    import warnings

    if "scheduler" in trainer:
        scheduler.load_state_dict(trainer["scheduler"])
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": on purpose here
        for _ in range(step):
            scheduler.step()


class Stepper:
    """One optimizer step: forward/backward over the micro-batches, clipping, the AdamW update at
    the scheduler's lr, then the scheduler's step."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, settings: TrainSettings,
                 total_steps: int, device: torch.device):
        self.model, self.optimizer, self.settings = model, optimizer, settings
        self.total_steps, self.device = total_steps, device
        self.scheduler = make_scheduler(optimizer, settings.schedule, total_steps)
        self.last_lr = optimizer.param_groups[0]["lr"]  # the lr of the last optimizer step (logged)
        self.losses = _wrap_ddp(_Losses(model, settings.tasks), device)
        self.bf16 = settings.precision == "bf16" and device.type == "cuda"  # autocast on CUDA only
        # phase(name) -> a context around each phase of the step; cirbench.train.bench_throughput times them
        self.phase: Callable[[str], Any] = lambda name: nullcontext()

    def step(self, step: int, micro_batches: list) -> dict[str, float]:
        """Returns the step's losses (mean over micro-batches and ranks).

        The losses stay on the device until the step ends: one all-reduce of them all and one
        copy to the host per step, not one synchronisation per loss and micro-batch."""
        totals: dict[str, torch.Tensor] = {}
        for micro, batch in enumerate(micro_batches):
            self.forward_backward(step, micro, batch, len(micro_batches), totals)
        reduced = self._reduced_losses(totals)  # before the update: a NaN stops with the weights intact
        _check_finite(step, reduced)
        with self.phase("optimizer"):
            self.optimizer_step()
        return reduced

    def forward_backward(self, step: int, micro: int, batch, n_micro: int, totals: dict[str, torch.Tensor]) -> None:
        """One micro-batch: forward (bf16 autocast on CUDA when asked), backward, losses added to ``totals``."""
        torch.manual_seed(step_seed(self.settings.seed, step, micro, distributed.rank()))
        last = micro == n_micro - 1
        sync = nullcontext() if last or not hasattr(self.losses, "no_sync") else self.losses.no_sync()
        with sync:
            with self.phase("forward"), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                losses = self.losses(_to_device(batch, self.device))
            with self.phase("backward"):
                (sum(losses.values()) / n_micro).backward()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0) + value.detach().float() / n_micro

    def optimizer_step(self) -> None:
        """Gradient clipping, the AdamW update at the scheduler's lr, the scheduler's step."""
        if self.settings.max_grad_norm:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            nn.utils.clip_grad_norm_(trainable, self.settings.max_grad_norm)
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _reduced_losses(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Mean over ranks of every loss, through one collective on the model's device."""
        names = list(totals)
        stacked = torch.stack([totals[name].to(self.device) for name in names])
        return dict(zip(names, distributed.all_reduce_mean(stacked).tolist()))


class _Runner:
    """One training run's state: steps, per-epoch accounting, checkpoints, logging."""

    def __init__(self, model, optimizer, settings: TrainSettings, plan: BatchPlan, total: int, device,
                 run_dir: Path, config: dict, hooks: "_Hooks"):
        self.model, self.optimizer, self.settings, self.plan = model, optimizer, settings, plan
        self.total, self.device, self.run_dir, self.config, self.hooks = total, device, run_dir, config, hooks
        self.stepper = Stepper(model, optimizer, settings, total, device)
        self.epoch_lines: list[dict[str, Any]] = []

    def run(self, dataset: TripletDataset, start: int, bar) -> None:
        task = bar.add_task("training", total=self.total, completed=start, status="")
        self.model.train()
        step = start
        while step < self.total:
            epoch = step // self.plan.steps_per_epoch
            end = min((epoch + 1) * self.plan.steps_per_epoch, self.total)
            self._run_epoch(dataset, epoch, range(step, end), bar, task)
            step = end

    def _run_epoch(self, dataset: TripletDataset, epoch: int, steps: range, bar, task) -> None:
        sums: dict[str, float] = {}
        started = time.perf_counter()
        loader = iter(step_loader(dataset, self.plan, steps, self.settings.num_workers, self.device.type == "cuda"))
        for step in steps:
            losses = self.stepper.step(step, [next(loader) for _ in range(self.settings.grad_accum)])
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            bar.update(task, advance=1, status=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))
            if self.hooks.on_step:
                self.hooks.on_step(step + 1, losses)
            if self._checkpoint_due(step + 1, steps.stop):
                self._checkpoint(step + 1)
        seconds = time.perf_counter() - started
        line = {
            "epoch": epoch + 1, "step": steps.stop, "total_steps": self.total,
            "loss": {name: value / len(steps) for name, value in sums.items()},
            "lr": self.stepper.last_lr,
            "samples_per_s": len(steps) * self.settings.batch_size / seconds,
        }
        if self.hooks.validate and ((epoch + 1) % self.hooks.validate_every == 0 or steps.stop == self.total):
            line["val"] = self._validate()
        self._log(line, bar)

    def _checkpoint_due(self, done: int, epoch_end: int) -> bool:
        every = self.settings.checkpoint_every
        return done == epoch_end or bool(every and done % every == 0)

    def _checkpoint(self, done: int) -> None:
        if distributed.is_main_process():
            trainer = {
                "step": done, "epoch": done / self.plan.steps_per_epoch, "total_steps": self.total,
                "config": self.config, "config_hash": config_hash(self.config),
                "scheduler": self.stepper.scheduler.state_dict(),
                "rng": {"python": _lists(random.getstate()), "numpy": _lists(np.random.get_state())},
            }
            save_training_checkpoint(self.run_dir, self.model, self.optimizer, trainer,
                                     keep=self.settings.keep_checkpoints)
        distributed.barrier()

    def _validate(self) -> dict[str, float]:
        metrics = self.hooks.validate(self.model) if distributed.is_main_process() else {}
        self.model.train()
        distributed.barrier()
        return metrics

    def _log(self, line: dict[str, Any], bar) -> None:
        self.epoch_lines.append(line)
        if not distributed.is_main_process():
            return
        with (self.run_dir / LOG_FILE).open("a") as log:
            log.write(json.dumps(line) + "\n")
        bar.console.print(format_epoch_line(line), markup=False, highlight=False)


def format_epoch_line(line: dict[str, Any]) -> str:
    losses = "  ".join(f"{name} {value:.4f}" for name, value in line["loss"].items())
    text = (f"epoch {line['epoch']}  step {line['step']}/{line['total_steps']}  {losses}  "
            f"lr {line['lr']:.2e}  {line['samples_per_s']:.1f} samples/s")
    if line.get("val"):
        text += "  val " + "  ".join(f"{name} {'—' if value is None else f'{value:.2f}'}" for name, value in line["val"].items())
    return text


def _save_final(model: nn.Module, run_dir: Path, config: dict[str, Any]) -> Path:
    """The trained model as a model folder (``build_model(spec, checkpoint=...)`` reads it), with
    the recipe hash in its config.json so evaluation results can name the recipe."""
    final, tmp = run_dir / FINAL, run_dir / f".{FINAL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    stamp_config_hash(tmp, config_hash(config))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _mark_trained_on(model: nn.Module, dataset_name: str) -> None:
    if dataset_name and dataset_name not in model.meta.trained_on:
        model.meta = replace(model.meta, trained_on=(*model.meta.trained_on, dataset_name))


def _wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel whenever there is a process group (torchrun, one rank or more)."""
    if not distributed.is_initialized():
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    # a stage may leave trainable parameters unused by some task (e.g. CIR-only steps)
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def _to_device(batch, device: torch.device):
    return replace(batch, ref_images=batch.ref_images.to(device, non_blocking=True),
                   target_images=batch.target_images.to(device, non_blocking=True))


def _check_finite(step: int, losses: dict[str, float]) -> None:
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        raise FloatingPointError(f"step {step + 1}: non-finite loss {bad}; the last checkpoint is intact")




def _lists(value: Any) -> Any:
    """RNG states -> plain JSON lists (numpy arrays and tuples included)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    return value


def _tuples(value: Any) -> Any:
    """Python's random state back from JSON lists (it wants tuples all the way down)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: asdict(v) if hasattr(v, "__dataclass_fields__") else str(v)))
