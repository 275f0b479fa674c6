"""Training throughput: samples/s of the real training step (the loop's ``Stepper``: forward,
backward, AdamW) on a fixed synthetic batch, so data loading is not part of the number.

Model FLOPs of a step are counted by ``torch.utils.flop_counter`` on a 2-sample batch before
gradient checkpointing is switched on (recomputation is not model work), scaled to the batch.
On a GPU the report adds peak memory and the model FLOP utilisation: achieved model FLOP/s over
the device's peak dense bf16 FLOP/s (MFU).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cirbench.interface import CIRBatch
from cirbench.train.loop import Stepper, TrainSettings, enable_grad_checkpointing, make_optimizer, prepare_model

# Peak dense bf16 tensor-core FLOP/s (vendor data sheets), matched against torch's device name.
PEAK_BF16_FLOPS = [
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100 NVL", 835.0e12),
    ("H100", 989.4e12),  # SXM (HBM3)
    ("A100", 312.0e12),
]
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
) -> dict[str, Any]:
    """Time ``steps`` optimizer steps after ``warmup``; ``micro_batch`` < ``batch_size`` accumulates."""
    micro_batch = micro_batch or batch_size
    settings = TrainSettings(
        stage=stage or model.stages[0], tasks=tasks or tuple(model.tasks), steps=warmup + steps,
        batch_size=batch_size, grad_accum=batch_size // micro_batch, lr=1e-5, precision=precision,
        grad_checkpointing=grad_checkpointing,
    )
    settings.check("bench")
    target = torch.device(device)
    prepare_model(model, replace(settings, grad_checkpointing=False), target)
    flops = _flops_per_sample(model, settings, target) * batch_size
    if grad_checkpointing:
        enable_grad_checkpointing(model)
    stepper = Stepper(model, make_optimizer(model, settings), settings, warmup + steps, target)
    micro_batches = [synthetic_batch(model, micro_batch, seed=m) for m in range(settings.grad_accum)]
    model.train()
    if target.type == "cuda":
        torch.cuda.reset_peak_memory_stats(target)
    seconds = _timed_steps(stepper, micro_batches, warmup, steps, target)
    report = {
        "model": model.meta.spec, "device": _device_name(target), "stage": settings.stage,
        "tasks": list(settings.tasks), "batch_size": batch_size, "micro_batch": micro_batch,
        "precision": precision, "grad_checkpointing": grad_checkpointing, "steps": steps,
        "seconds_per_step": seconds / steps, "samples_per_s": steps * batch_size / seconds,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "model_tflops_per_step": flops / 1e12, "achieved_tflops": flops * steps / seconds / 1e12,
    }
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


def _flops_per_sample(model: nn.Module, settings: TrainSettings, device: torch.device) -> float:
    """Forward + backward FLOPs of one training sample (2-sample batch, before gradient
    checkpointing is switched on, so recomputation is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = synthetic_batch(model, 2, seed=99)
    batch.ref_images, batch.target_images = batch.ref_images.to(device), batch.target_images.to(device)
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast("cuda", dtype=torch.bfloat16, enabled=settings.precision == "bf16"):
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

    from cirbench.backbones.blip2 import Blip2Backbone, build_tiny_tokenizer, vitg_blip2_config

    directory = Path(directory)
    if (directory / "config.json").is_file():
        return directory
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        blip = Blip2ForImageTextRetrieval(vitg_blip2_config())
    Blip2Backbone(blip, build_tiny_tokenizer()).save_pretrained(directory)
    return directory
