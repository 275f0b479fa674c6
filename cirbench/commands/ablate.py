"""``cirbench ablate data-size | components | pretraining``: the paper's ablations (Figure 5,
Table 5, Table 4), trained and evaluated as the demo does, reported in the paper's layouts."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cirbench.devices import DEVICE_HELP, PRECISION_HELP

ablate_app = typer.Typer(
    help="The paper's ablations: FACap data size, FashionBLIP-2 components, FACap pre-training.",
    no_args_is_help=True,
)


class RecipeSize(str, Enum):
    tiny = "tiny"
    vitg = "vitg"


Out = Annotated[Path, typer.Option("--out", help="Run folder, shared by the three ablations; a rerun reuses "
                                   "every finished training and evaluation.")]
World = Annotated[Path | None, typer.Option("--world", help="A synthetic world folder (default: the cached "
                                               "default world).")]
DataRoot = Annotated[Path | None, typer.Option("--data-root", help="Real data instead of the world: a folder "
                                                  "with facap/, fashioniq/ and enhfashioniq/.")]
Size = Annotated[RecipeSize, typer.Option("--recipe-size", help="tiny: the synthetic world's tiny models on CPU; "
                                          "vitg: the paper-size recipes (GPU, real weights).")]
Steps = Annotated[str | None, typer.Option("--steps", help="Optimizer steps of stage 1 (FACap) and stage 2 "
                                              "(FashionIQ), 'S1,S2' or one N for both (default: 40,60 at tiny "
                                              "size; the recipes' epochs at vitg).")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", min=1, help="Triplets per step (default: 64 at "
                                                  "tiny size; the recipes' at vitg).")]
Seed = Annotated[int, typer.Option("--seed", help="Training seed (data order, nested subsets) and bootstrap seed.")]
Threads = Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads (1 is fastest for tiny models).")]
Device = Annotated[str, typer.Option("--device", help="Training and evaluation device: " + DEVICE_HELP)]
Precision = Annotated[str, typer.Option("--precision", help="Evaluation precision: " + PRECISION_HELP)]
Progress = Annotated[bool, typer.Option("--progress/--no-progress")]


def data_size(
    fractions: Annotated[str, typer.Option("--fractions", help="FACap fractions in (0, 1], comma-separated; "
                                           "nested subsets (one seed).")] = "0.1,0.25,0.5,1.0",
    out: Out = Path("runs/ablate"), world: World = None, data_root: DataRoot = None, recipe_size: Size = RecipeSize.tiny,
    steps: Steps = None, batch_size: BatchSize = None, seed: Seed = 0, threads: Threads = 1, device: Device = "auto",
    precision: Precision = "auto", progress: Progress = True,
) -> None:
    """FashionBLIP-2 stage 1 on nested fractions of the FACap-style set, each for the same number
    of epochs (--steps is the full set's; a fraction gets its share), evaluated on FashionIQ and
    enhFashionIQ: the data-size curve (PNG, PDF; the paper's Figure 5) and its table, with the
    largest vs smallest fraction as a paired test.

    Example: cirbench ablate data-size --fractions 0.25,0.5,1.0 --steps 20
    """
    from cirbench.experiments import ablations

    parsed = _fractions(fractions)
    scale = _scale(recipe_size, steps, seed)
    _run(ablations.data_size(parsed, scale), scale, out, world, data_root, batch_size, threads, device, precision, progress)


def components(
    fine_tune: Annotated[bool, typer.Option("--ft/--no-ft", help="Also fine-tune each setting on FashionIQ "
                                            "(Table 5's FT columns).")] = True,
    out: Out = Path("runs/ablate"), world: World = None, data_root: DataRoot = None, recipe_size: Size = RecipeSize.tiny,
    steps: Steps = None, batch_size: BatchSize = None, seed: Seed = 0, threads: Threads = 1, device: Device = "auto",
    precision: Precision = "auto", progress: Progress = True,
) -> None:
    """The paper's Table 5: FashionBLIP-2 trained with CIR or CIR+CTR, with or without adapters,
    global or multi-head matching, evaluated after FACap only (no FT) and after FashionIQ
    fine-tuning (FT); paired tests for multi-head vs global, adapters vs none, CIR+CTR vs CIR.

    Example: cirbench ablate components --steps 20,20 --no-ft
    """
    from cirbench.experiments import ablations

    scale = _scale(recipe_size, steps, seed)
    ablation = ablations.components(scale, fine_tune=fine_tune)
    _run(ablation, scale, out, world, data_root, batch_size, threads, device, precision, progress)


def pretraining(
    models: Annotated[str, typer.Option("--models", help="Comma-separated: fashionblip2, sprc.")] = "fashionblip2,sprc",
    out: Out = Path("runs/ablate"), world: World = None, data_root: DataRoot = None, recipe_size: Size = RecipeSize.tiny,
    steps: Steps = None, batch_size: BatchSize = None, seed: Seed = 0, threads: Threads = 1, device: Device = "auto",
    precision: Precision = "auto", progress: Progress = True,
) -> None:
    """The paper's Table 4: FashionBLIP-2 and SPRC fine-tuned on FashionIQ with and without FACap
    pre-training first, evaluated on FashionIQ and enhFashionIQ, with a paired test per model.

    Example: cirbench ablate pretraining --models fashionblip2 --steps 20,30
    """
    from cirbench.commands.core import user_errors
    from cirbench.experiments import ablations

    scale = _scale(recipe_size, steps, seed)
    with user_errors():
        ablation = ablations.pretraining(scale, [m.strip() for m in models.split(",") if m.strip()])
    _run(ablation, scale, out, world, data_root, batch_size, threads, device, precision, progress)


def _fractions(text: str) -> list[float]:
    try:
        fractions = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, got {text!r}", param_hint="--fractions") from None
    bad = [f for f in fractions if not 0 < f <= 1]
    if not fractions or bad:
        raise typer.BadParameter(f"each fraction must be in (0, 1]; got {text!r}", param_hint="--fractions")
    if len(set(fractions)) != len(fractions):
        raise typer.BadParameter(f"a fraction is repeated in {text!r}", param_hint="--fractions")
    return fractions


def _scale(size: RecipeSize, steps: str | None, seed: int):
    from cirbench.experiments.ablations import DEFAULT_STEPS, Scale

    s1, s2 = DEFAULT_STEPS[size.value] if steps is None else _steps(steps)
    return Scale(size.value, s1, s2, seed)


def _steps(text: str) -> tuple[int, int]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (1, 2) or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise typer.BadParameter(f"expected S1,S2 or N (positive integers), got {text!r}", param_hint="--steps")
    return int(parts[0]), int(parts[-1])


def _run(ablation, scale, out: Path, world: Path | None, data_root: Path | None, batch_size: int | None,
         threads: int, device: str, precision: str, progress: bool) -> None:
    from cirbench.commands.core import user_errors
    from cirbench.devices import resolve_device, resolve_precision
    from cirbench.experiments.ablations import DEFAULT_BATCH_SIZE, Where, run_ablation

    if world is not None and data_root is not None:
        raise typer.BadParameter("give --world (synthetic) or --data-root (real data), not both", param_hint="--world")
    batch_size = batch_size if batch_size is not None else DEFAULT_BATCH_SIZE[scale.size]
    with user_errors():
        target = resolve_device(device)
        written = run_ablation(ablation, out, scale, Where(world, data_root), batch_size=batch_size, threads=threads,
                               device=target, precision=resolve_precision(precision, target), progress=progress)
    if written["errors"]:
        typer.echo(f"error: {len(written['errors'])} evaluation(s) failed; see {out / 'results' / 'errors.jsonl'}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    ablate_app.command("data-size")(data_size)
    ablate_app.command("components")(components)
    ablate_app.command("pretraining")(pretraining)
    app.add_typer(ablate_app, name="ablate")
