"""``cirbench doctor``: the environment report; with ``--gpu`` the acceptance run of a GPU machine.

Thin: options -> ``cirbench.doctor``; torch loads inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    gpu: bool = typer.Option(False, "--gpu", help="Run the GPU acceptance pipeline (tests, bench train at paper size, evaluation throughput, torchrun on NCCL); needs CUDA."),
    out: Path = typer.Option(Path("runs/doctor"), "--out", help="With --gpu: where doctor.json, doctor.md, stand-in images and random backbones go."),
    fashioniq: Optional[Path] = typer.Option(None, "--fashioniq", help="With --gpu: a FashionIQ annotation folder (captions/, image_splits/) for the evaluation throughput run."),
    category: str = typer.Option("dress", "--category", help="With --gpu: the FashionIQ val category the throughput run evaluates."),
    steps: Optional[str] = typer.Option(None, "--steps", help="With --gpu: comma-separated steps to run (default: all): environment,tests,bench_train,eval_throughput,torchrun_smoke."),
    as_json: bool = typer.Option(False, "--json", help="Without --gpu: print the environment report as one JSON object."),
) -> None:
    """What this machine runs (Python, torch, CUDA, library versions, BLIP-2's attention kernel).

    With --gpu, on one GPU, in a few minutes: the CUDA-relevant tests, `bench train` of FashionBLIP-2
    and SPRC at ViT-g and CLIP4CIR at RN50x4 (random weights, bf16, batch 512), images/s of a
    ViT-g evaluation on stand-in FashionIQ images, and a torchrun training on NCCL; writes
    OUT/doctor.json and OUT/doctor.md, exits 1 if any step failed and 2 without a GPU. Run it
    from the repository root (the tests are read from tests/). Nothing is downloaded.

    Example: cirbench doctor --gpu --out runs/doctor --fashioniq ../shared/data/fashioniq
    """
    import torch

    from cirbench.commands.core import library_output_to_stderr, refuse_unused, user_errors
    from cirbench.doctor import STEPS, DoctorPlan, environment, run_doctor

    with user_errors():
        if gpu:
            refuse_unused(ctx, "--gpu writes OUT/doctor.json; --json prints the environment report without --gpu", "as_json")
        else:
            refuse_unused(ctx, "only the GPU acceptance run (--gpu) uses it", "out", "fashioniq", "category", "steps")
    if not gpu:
        with library_output_to_stderr(as_json):
            report = environment()
        typer.echo(json.dumps(report, indent=1) if as_json else _environment_text(report))
        return
    if not torch.cuda.is_available():
        typer.echo(f"cirbench doctor --gpu: no CUDA GPU here (torch {torch.__version__} sees none); run it on a GPU machine", err=True)
        raise typer.Exit(2)
    chosen = tuple(s.strip() for s in steps.split(",") if s.strip()) if steps else tuple(STEPS)
    with user_errors():
        unknown = [s for s in chosen if s not in STEPS]
        if unknown:
            from cirbench.errors import DataError

            raise DataError("--steps", unknown[0], f"unknown step; steps: {', '.join(STEPS)}")
        summary = run_doctor(DoctorPlan(out=out, device="cuda", size="full", fashioniq=fashioniq, category=category),
                             chosen, log=lambda line: typer.echo(line, err=True))
    typer.echo(f"doctor: {'all steps passed' if summary['ok'] else 'FAILED'} in {summary['seconds']:.0f} s; "
               f"{out / 'doctor.md'}, {out / 'doctor.json'}")
    if not summary["ok"]:
        raise typer.Exit(1)


def _environment_text(report: dict) -> str:
    versions = "\n".join(f"  {name:<16} {version or '-'}" for name, version in report["versions"].items())
    devices = ", ".join(report["devices"]) or "none"
    return (f"Python {report['python']} on {report['platform']}, {report['cpu_count']} CPUs\n"
            f"CUDA available: {report['cuda_available']} (torch built for CUDA {report['torch_cuda']}); GPUs: {devices}; "
            f"NCCL: {report['nccl']}; bf16: {report['bf16_supported']}\n"
            f"BLIP-2 attention: {report['blip2_attention']}\n{versions}")
