"""Training throughput: samples/s of the real training step (the loop's ``Stepper``: forward,
backward, AdamW) on a fixed synthetic batch, so data loading is not part of the number.

Model FLOPs of a step are counted by ``torch.utils.flop_counter`` on a 2-sample batch before
gradient checkpointing is switched on (recomputation is not model work), scaled to the batch.
On a GPU the report adds peak memory and the model FLOP utilisation: achieved model FLOP/s over
the device's peak dense bf16 FLOP/s (MFU).

Where the time goes ("profile before guessing"): after the timed steps one more step runs with
its phases timed on the device's own clock (CUDA events, no synchronisation between phases;
wall clock on the CPU): the vision tower's forward (a forward hook pair on it), the rest of the
forward (Q-Former, heads, losses), the backward pass (with the recomputation of checkpointed
layers when checkpointing is on) and the optimizer step (clipping, AdamW); ``phases`` holds their
shares of that step, ``phase_ms`` their milliseconds. ``profile_dir`` also records that step with
torch.profiler: the table of the most expensive operators, and the shares of attention kernels
and of dtype casts (autocast's copies of fp32 weights) in ``profile``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from cirbench.compat import attention_implementations
from cirbench.interface import CIRBatch
from cirbench.train.loop import (
    Stepper,
    TrainSettings,
    enable_grad_checkpointing,
    make_optimizer,
    prepare_model,
)

# Peak dense bf16 tensor-core FLOP/s (vendor data sheets), matched against torch's device name.
PEAK_BF16_FLOPS = [
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100 NVL", 835.0e12),
    ("H100", 989.4e12),  # SXM (HBM3)
    ("A100", 312.0e12),
]
_EXTRA_STEPS = 2  # after the timed ones: the phase breakdown and the profiled step
_WORDS = ("make it darker with longer sleeves and a round neckline instead of the collar and add "
          "thin vertical stripes keep the loose fit but shorten the hem to knee length").split()


def synthetic_batch(model: nn.Module, batch_size: int, seed: int = 0) -> CIRBatch:
    """Random images at the model's size, modification texts of ~20 words, captions of ~60."""
    generator = torch.Generator().manual_seed(seed)
    size = model.meta.image_size
    images = torch.randn(2 * batch_size, 3, size, size, generator=generator)
    texts = [" ".join(_WORDS[(i + j) % len(_WORDS)] for j in range(20)) for i in range(batch_size)]
    captions = [" ".join(_WORDS[(i + j) % len(_WORDS)] for j in range(60)) for i in range(batch_size)]
    return CIRBatch(images[:batch_size], texts, images[batch_size:], captions, [f"t{i}" for i in range(batch_size)])


def benchmark_training(
    model: nn.Module,
    *,
    batch_size: int,
    micro_batch: int | None = None,
    steps: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    precision: str = "fp32",
    grad_checkpointing: bool = False,
    stage: str | None = None,
    tasks: tuple[str, ...] | None = None,
    profile_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Time ``steps`` optimizer steps after ``warmup``; ``micro_batch`` < ``batch_size`` accumulates.

    Then one more step with its phases timed (``phases``, ``phase_ms``) and, with ``profile_dir``,
    recorded by torch.profiler (``profile``; the operator table in ``profile_dir/profile.txt``).
    """
    micro_batch = micro_batch or batch_size
    settings = TrainSettings.from_dict({
        "stage": stage or model.stages[0], "tasks": tasks or tuple(model.tasks), "steps": warmup + steps + _EXTRA_STEPS,
        "batch_size": batch_size, "grad_accum": batch_size // micro_batch, "lr": 1e-5, "precision": precision,
        "grad_checkpointing": grad_checkpointing,
    }, "bench train")
    target = torch.device(device)
    prepare_model(model, replace(settings, grad_checkpointing=False), target)
    flops = _flops_per_sample(model, settings, target) * batch_size
    if grad_checkpointing:
        enable_grad_checkpointing(model)
    stepper = Stepper(model, make_optimizer(model, settings), settings, settings.steps, target)
    micro_batches = [synthetic_batch(model, micro_batch, seed=m) for m in range(settings.grad_accum)]
    model.train()
    if target.type == "cuda":
        torch.cuda.reset_peak_memory_stats(target)
    seconds = _timed_steps(stepper, micro_batches, warmup, steps, target)
    phase_seconds = phase_breakdown(stepper, micro_batches, warmup + steps, vision_tower(model))
    report = {
        "model": model.meta.spec, "device": _device_name(target), "stage": settings.stage,
        "tasks": list(settings.tasks), "batch_size": batch_size, "micro_batch": micro_batch,
        "precision": precision, "grad_checkpointing": grad_checkpointing, "steps": steps,
        "seconds_per_step": seconds / steps, "samples_per_s": steps * batch_size / seconds,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "model_tflops_per_step": flops / 1e12, "achieved_tflops": flops * steps / seconds / 1e12,
        "attention": attention_implementations(getattr(getattr(model, "backbone", None), "blip", None)),
        "phases": phase_shares(phase_seconds),
        "phase_ms": {name: 1000 * value for name, value in phase_seconds.items()},
    }
    if profile_dir is not None:
        report["profile"] = profile_step(stepper, micro_batches, warmup + steps + 1, target, Path(profile_dir))
    if target.type == "cuda":
        peak = _peak_flops(torch.cuda.get_device_name(target)) if precision == "bf16" else None
        report.update({
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(target) / 2**30,
            "peak_tflops": peak / 1e12 if peak else None,
            "mfu": flops * steps / seconds / peak if peak else None,
        })
    return report


def _timed_steps(stepper: Stepper, micro_batches: list[CIRBatch], warmup: int, steps: int, device) -> float:
    for step in range(warmup):
        stepper.step(step, micro_batches)
    _sync(device)
    started = time.perf_counter()
    for step in range(warmup, warmup + steps):
        stepper.step(step, micro_batches)
    _sync(device)
    return time.perf_counter() - started


def vision_tower(model: nn.Module) -> nn.Module | None:
    """The image tower whose forward the breakdown times: BLIP-2's ViT or open_clip's visual."""
    backbone = getattr(model, "backbone", None)
    for owner, name in ((getattr(backbone, "blip", None), "vision_model"), (getattr(backbone, "clip", None), "visual")):
        if owner is not None and isinstance(getattr(owner, name, None), nn.Module):
            return getattr(owner, name)
    return None


class PhaseClock:
    """Accumulated time per phase name, on the device's timeline: CUDA events recorded in the
    stream (nothing waits until ``seconds()``), wall-clock time on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.spans: list[tuple[str, Any, Any]] = []
        self._open: dict[str, Any] = {}

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self, name: str) -> None:
        self._open[name] = self._now()

    def stop(self, name: str) -> None:
        self.spans.append((name, self._open.pop(name), self._now()))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)

    def seconds(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
        totals: dict[str, float] = {}
        for name, begin, end in self.spans:
            spent = begin.elapsed_time(end) / 1000 if self.cuda else end - begin
            totals[name] = totals.get(name, 0.0) + spent
        return totals


def phase_breakdown(stepper: Stepper, micro_batches: list[CIRBatch], step: int, vision: nn.Module | None) -> dict[str, float]:
    """Seconds of one optimizer step by phase: step, forward, vision_forward (inside forward),
    backward, optimizer; the stepper is left as it was."""
    clock = PhaseClock(stepper.device)
    hooks = []
    if vision is not None:
        hooks = [vision.register_forward_pre_hook(lambda *_: clock.start("vision_forward")),
                 vision.register_forward_hook(lambda *_: clock.stop("vision_forward"))]
    stepper.phase = clock.phase
    try:
        with clock.phase("step"):
            stepper.step(step, micro_batches)
    finally:
        stepper.phase = lambda name: nullcontext()
        for hook in hooks:
            hook.remove()
    return clock.seconds()


def phase_shares(seconds: dict[str, float]) -> dict[str, float]:
    """Shares of the step: vision_forward, rest_forward, backward, optimizer, other (they sum to 1)."""
    step = seconds.get("step") or 1e-12
    vision = seconds.get("vision_forward", 0.0)
    parts = {
        "vision_forward": vision,
        "rest_forward": max(seconds.get("forward", 0.0) - vision, 0.0),
        "backward": seconds.get("backward", 0.0),
        "optimizer": seconds.get("optimizer", 0.0),
    }
    parts["other"] = max(step - sum(parts.values()), 0.0)
    total = sum(parts.values()) or 1e-12
    return {name: value / total for name, value in parts.items()}


_ATTENTION_OPS = ("scaled_dot_product", "flash", "efficient_attention", "cudnn_attention", "bmm", "baddbmm", "softmax")
_CAST_OPS = ("aten::_to_copy", "aten::copy_", "aten::to")


def profile_step(stepper: Stepper, micro_batches: list[CIRBatch], step: int, device: torch.device, out: Path) -> dict[str, Any]:
    """One step under torch.profiler: ``out/profile.txt`` (operators by self time) and the shares of
    attention-related operators and of dtype casts in the step's self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as recorded:
        stepper.step(step, micro_batches)
        _sync(device)
    events = recorded.key_averages()
    sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.txt").write_text(events.table(sort_by=sort_key, row_limit=40) + "\n")

    def self_time(event) -> float:
        if device.type == "cuda":
            return float(getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0))
        return float(event.self_cpu_time_total)

    total = sum(self_time(e) for e in events) or 1e-12
    attention = sum(self_time(e) for e in events if any(op in e.key for op in _ATTENTION_OPS))
    casts = sum(self_time(e) for e in events if e.key in _CAST_OPS)
    top = sorted(events, key=self_time, reverse=True)[:8]
    return {"table": str(out / "profile.txt"), "attention_share": attention / total, "cast_share": casts / total,
            "top_ops": {e.key: self_time(e) / total for e in top}}


def _flops_per_sample(model: nn.Module, settings: TrainSettings, device: torch.device) -> float:
    """Forward + backward FLOPs of one training sample (2-sample batch, before gradient
    checkpointing is switched on, so recomputation is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = synthetic_batch(model, 2, seed=99)
    batch.ref_images, batch.target_images = batch.ref_images.to(device), batch.target_images.to(device)
    counter = FlopCounterMode(display=False)
    # as the training loop computes: bf16 autocast on CUDA only
    with counter, torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16" and device.type == "cuda"):
        sum(model.training_losses(batch, settings.tasks).values()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def _peak_flops(device_name: str) -> float | None:
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in device_name), None)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_vitg_blip2_dir(directory: str | Path) -> Path:
    """A BLIP-2 ViT-g retrieval backbone folder with random weights (throughput needs no weights;
    the real ones cannot be downloaded everywhere). Initialised on the GPU when there is one."""
    from transformers import Blip2ForImageTextRetrieval

    from cirbench.backbones.blip2 import Blip2Backbone
    from cirbench.backbones.blip2_configs import vitg_blip2_config
    from cirbench.backbones.blip2_tokenizers import build_tiny_tokenizer

    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        blip = Blip2ForImageTextRetrieval(vitg_blip2_config())
    Blip2Backbone(blip, build_tiny_tokenizer()).save_pretrained(directory)
    return directory


# The paper-size variant of each trainable model, and the random-weight backbone folder it is built from.
FULL_SIZE_VARIANTS = {"fashionblip2": "vitg", "sprc": "vitg", "clip4cir": "rn50x4"}


def random_clip_dir(model_name: str, directory: str | Path) -> Path:
    """An open_clip model folder (local-dir format) of ``model_name`` with random weights and
    QuickGELU, as the OpenAI weights use; built offline (``pretrained=None``, no download)."""
    from cirbench.backbones.clip import OPEN_CLIP_CONFIG, load_clip

    directory = Path(directory)
    if (directory / OPEN_CLIP_CONFIG).is_file():
        return directory
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        backbone = load_clip(model_name, None)
    backbone.model_cfg["quick_gelu"] = True  # the folder rebuilds with QuickGELU; random weights fit either
    return backbone.save_open_clip(directory)


def full_size_model(name: str, scratch: str | Path) -> nn.Module:
    """``name`` at paper size (ViT-g BLIP-2 or RN50x4 CLIP) with random weights; backbone folders
    are made once under ``scratch`` and reused."""
    from cirbench.baselines.zoo import build_model

    variant = FULL_SIZE_VARIANTS.get(name)
    if variant is None:
        raise ValueError(f"no paper-size variant known for {name!r}; known: {', '.join(FULL_SIZE_VARIANTS)}")
    if variant == "vitg":
        backbone = random_vitg_blip2_dir(Path(scratch) / "vitg")
    else:
        backbone = random_clip_dir({"rn50x4": "RN50x4"}[variant], Path(scratch) / variant)
    return build_model(f"{name}:{variant}", backbone_dir=str(backbone))
