"""``cirbench demo``: the whole paper in miniature on the synthetic world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cirbench.devices import DEVICE_HELP, PRECISION_HELP


def demo(
    out: Annotated[Path, typer.Option("--out", help="Run folder; a rerun reuses what is already built.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Three models, fewer steps, no ablations (CI: ~3 min).")] = False,
    world: Annotated[Optional[Path], typer.Option("--world", help="A world folder (default: the cached default world).")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads per process (1 is fastest for tiny models).")] = 1,
    jobs: Annotated[Optional[int], typer.Option("--jobs", min=1, show_default="2, or 1 on a one-core machine", help="Trainings and evaluations run at once, one process each (their output goes to OUT/logs/).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    device: Annotated[str, typer.Option("--device", help="Training and evaluation device: " + DEVICE_HELP)] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="Evaluation precision: " + PRECISION_HELP)] = "auto",
) -> None:
    """Build FACap-style and enhFashionIQ-style data from the synthetic world, train FashionBLIP-2,
    SPRC and CLIP4CIR with the tiny recipes, evaluate them and zero-shot CLIP on both benchmarks,
    and answer the paper's questions (pre-training, matching, adapters, data size) with paired
    tests; writes tables, plots, a grid and an HTML report. No network.

    Example: cirbench demo --quick
    """
    from cirbench.commands.core import user_errors
    from cirbench.devices import resolve_device, resolve_precision
    from cirbench.experiments.demo import run_demo
    from cirbench.experiments.plan import FULL, QUICK

    with user_errors():
        target = resolve_device(device)
        written = run_demo(QUICK if quick else FULL, out, world=world, threads=threads, jobs=jobs or default_jobs(),
                           progress=progress, device=target, precision=resolve_precision(precision, target))
    if written["errors"]:  # the tables and the report are written, with the error rows in them
        typer.echo(f"error: {len(written['errors'])} evaluation(s) failed; see {out / 'results' / 'errors.jsonl'}", err=True)
        raise typer.Exit(1)


def default_jobs() -> int:
    """Two processes where two cores are free to this one (the demo's two-core target), else one."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(2, cores)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("demo")(demo)
