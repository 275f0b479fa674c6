"""Training commands: ``train`` (a model from a YAML recipe) and ``bench train`` (throughput).

Thin: options -> recipe -> library calls; torch and the models load inside the commands.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from cirbench.commands.core import library_output_to_stderr, refuse_unused, user_errors
from cirbench.errors import DataError
from cirbench.files import check_writable_folder
from cirbench.devices import DEVICE_HELP


class Size(str, Enum):
    tiny = "tiny"
    full = "full"
    vitg = "vitg"  # the name before RN50x4 joined: the same as full


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("train")(train)
    bench_app.command("train")(bench_train)


def train(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name[:variant]; the variant overrides the recipe's model.variant."),
    recipe: Path = typer.Option(..., "--recipe", help="YAML recipe: a file, or a shipped recipe's name, e.g. clip4cir/stage1_tiny (schema: recipes/README.md)."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override one recipe key, a.b=value (YAML value); repeatable."),
    out: Optional[Path] = typer.Option(None, "--out", show_default="runs/train-<model>-<recipe>", help="Run folder: checkpoints/, final/, log.jsonl."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " Under torchrun, cuda is cuda:LOCAL_RANK."),
    dist_backend: Optional[str] = typer.Option(None, "--dist-backend", show_default="nccl on CUDA, gloo on CPU ($CIRBENCH_DIST_BACKEND)", help="Process-group backend under torchrun."),
) -> None:
    """Train a model from a recipe; the trained model lands in OUT/final (use it with --checkpoint).

    One GPU or CPU as is; several GPUs with torchrun (torchrun --nproc-per-node 8 -m cirbench train ...).
    Interrupted runs continue with --resume and end with the same weights as an uninterrupted run.

    Example: cirbench train clip4cir --recipe clip4cir/stage1_tiny --set train.steps=20
    """
    from cirbench.config import apply_overrides, config_hash, load_recipe, resolve_recipe
    from cirbench.devices import resolve_device
    from cirbench.train.recipe import read_recipe
    from cirbench.train.recipe_run import train_from_recipe

    from cirbench.distributed import launched_with_torchrun

    with user_errors():
        if not launched_with_torchrun():
            refuse_unused(ctx, "the process-group backend exists only under torchrun", "dist_backend")
        target = resolve_device(device)
        source = resolve_recipe(recipe)
        config = apply_overrides(load_recipe(source), overrides or [], source)
        spec = read_recipe(config, source, model).spec  # the whole recipe checked before any folder is made
        run_dir = check_writable_folder(out or Path("runs") / f"train-{spec.replace(':', '_')}-{source.stem}")
        result = train_from_recipe(spec, config, source, run_dir, resume=resume, progress=progress,
                                   device=target, backend=dist_backend)
    if result.final_dir is not None:
        typer.echo(f"trained model: {result.final_dir} (recipe hash {config_hash(config)})")
        typer.echo(f"evaluate it: cirbench eval --model {spec} --checkpoint {result.final_dir} --dataset ... --data-root ...")


def bench_train(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="Registered model name, e.g. fashionblip2."),
    size: Size = typer.Option(Size.tiny, "--size", help="tiny: the test_tiny variant on CPU; full (or vitg): the paper size on CUDA, random weights: ViT-g for fashionblip2 and sprc, RN50x4 for clip4cir."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, show_default="32 tiny, 512 full", help="Samples per optimizer step."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", min=1, show_default="batch size", help="Samples per forward pass (gradient accumulation)."),
    steps: int = typer.Option(5, "--steps", min=1, help="Timed optimizer steps (after 2 warm-up steps)."),
    grad_checkpointing: Optional[bool] = typer.Option(None, "--grad-checkpointing/--no-grad-checkpointing", show_default="on at full size", help="Recompute activations in the backward pass."),
    backbone_dir: Optional[Path] = typer.Option(None, "--backbone-dir", help="full: where the random backbone folders are made, and reused (default: a temporary folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    profile: Optional[Path] = typer.Option(None, "--profile", help="Also record one step with torch.profiler: the operator table in PROFILE/profile.txt, attention and cast shares in the report."),
) -> None:
    """Training throughput of one model: samples/s (and on GPU peak memory and MFU), and where a
    step's time goes: vision tower forward, the rest of the forward, backward (with recomputation),
    optimizer.

    Example: cirbench bench train --model fashionblip2 --size tiny --json
    """
    import tempfile

    import torch

    from cirbench.baselines.zoo import MODELS, build_model, resolve_spec
    from cirbench.train.bench_throughput import FULL_SIZE_VARIANTS, benchmark_training, full_size_model

    full = size is not Size.tiny
    with user_errors(), library_output_to_stderr(as_json):
        if not full:
            refuse_unused(ctx, "the random paper-size backbones are made only with --size full", "backbone_dir")
        if profile is not None:
            check_writable_folder(profile, "--profile")
        if full and not torch.cuda.is_available():
            raise DataError("--size", size.value, "needs a CUDA GPU (paper-size training at batch 512); use --size tiny on CPU")
        if full and model not in FULL_SIZE_VARIANTS:
            MODELS.entry(model)  # an unknown name: the registry's error with close matches
            raise DataError("--model", model, f"no paper-size variant to train (models: {', '.join(FULL_SIZE_VARIANTS)})")
        with tempfile.TemporaryDirectory() as scratch:
            built = full_size_model(model, backbone_dir or scratch) if full else build_model(str(resolve_spec(f"{model}:test_tiny")))
            if not built.stages:
                raise DataError("--model", model, "a zero-shot model: it has nothing to train")
            report = benchmark_training(
                built, batch_size=batch_size or (512 if full else 32), micro_batch=micro_batch,
                steps=steps, device="cuda" if full else "cpu", precision="bf16" if full else "fp32",
                grad_checkpointing=full if grad_checkpointing is None else grad_checkpointing,
                profile_dir=profile,
            )
    typer.echo(json.dumps(report) if as_json else _bench_text(report))


def _bench_text(report: dict[str, Any]) -> str:
    lines = [
        f"{report['model']} on {report['device']}: stage {report['stage']}, tasks {'+'.join(report['tasks'])}, "
        f"batch {report['batch_size']} (micro {report['micro_batch']}), {report['precision']}",
        f"  {report['samples_per_s']:.1f} samples/s  ({report['seconds_per_step']:.3f} s/step, "
        f"{report['trainable_params']:,} of {report['total_params']:,} parameters trained)",
    ]
    lines.append(f"  {report['achieved_tflops']:.3g} model TFLOP/s ({report['model_tflops_per_step']:.3g} TFLOP per step)")
    shares = "  ".join(f"{name} {100 * share:.0f}%" for name, share in report["phases"].items())
    lines.append(f"  one step: {shares}")
    if report.get("attention"):
        lines.append("  attention: " + ", ".join(f"{part} {kind}" for part, kind in report["attention"].items()))
    if "profile" in report:
        profiled = report["profile"]
        lines.append(f"  profile: attention ops {100 * profiled['attention_share']:.0f}%, dtype casts "
                     f"{100 * profiled['cast_share']:.0f}% of the step's self time; table: {profiled['table']}")
    if "peak_gpu_memory_gb" in report:
        mfu = f"{100 * report['mfu']:.1f}%" if report["mfu"] is not None else "n/a (no peak known for this device/precision)"
        lines.append(f"  peak GPU memory {report['peak_gpu_memory_gb']:.1f} GiB, MFU {mfu}")
    return "\n".join(lines)
