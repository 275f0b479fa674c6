"""``cirbench synth`` and ``cirbench synth-stats``: write the synthetic fashion world and compare
its vague and detailed texts. The synth library (numpy, PIL) loads inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def synth(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the world into (empty, or a world with the same settings).")
    ],
    preset: Annotated[str, typer.Option(help="tiny (tests, seconds), default (the demo), large.")] = "default",
    seed: Annotated[int, typer.Option(help="Same seed and settings: byte-identical files.")] = 0,
    image_size: Annotated[
        Optional[int], typer.Option("--image-size", help="Pixels per side (64 to 224 intended).")
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a knob, e.g. --set vagueness=0.8 (repeatable).")
    ] = None,
    workers: Annotated[Optional[int], typer.Option(help="Drawing processes (default: CPU count, at most 4).")] = None,
) -> None:
    """Write the synthetic fashion world: FashionIQ-like pairs with vague two-annotator texts,
    Fashion200k-like and DeepFashion-MultiModal-like sources in their real on-disk formats, a
    ground-truth sidecar and a manifest (world.json). Knobs: see cirbench.synth.presets.Knobs.

    Example: cirbench synth --preset default --out world --seed 0
    """
    from rich.console import Console

    from cirbench.commands.core import user_errors
    from cirbench.files import check_writable_folder
    from cirbench.progress import progress_bar
    from cirbench.synth.presets import resolve_knobs
    from cirbench.synth.world import MANIFEST, check_target, plan_world, write_plan

    console = Console()
    with user_errors():
        check_writable_folder(out)
        plan = plan_world(preset, seed, resolve_knobs(preset, set_ or [], image_size))
        if check_target(out, plan.settings()):
            console.print(f"{out} already holds this world (preset {preset}, seed {seed}); nothing to do.")
            return
        with progress_bar(transient=True, console=console) as progress:
            task = progress.add_task("drawing images", total=len(plan.images()))
            write_plan(out, plan, workers=workers, on_image=lambda done, _: progress.update(task, completed=done))
    console.print(
        f"wrote {len(plan.images())} images to {out} (preset {preset}, seed {seed}); manifest: {out / MANIFEST}"
    )


def synth_stats(
    world: Annotated[Path, typer.Argument(help="A folder written by cirbench synth.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Compare the FashionIQ-like vague texts of a world with detailed (FACap-like) texts of the
    same pairs: length, vocabulary, share of true attribute changes stated, share of false
    claims, and the Recall@1 and @10 an attribute oracle (true attributes of every image, claims
    read from the text) reaches with each kind of text, and without any text.

    Example: cirbench synth-stats world
    """
    from rich.console import Console
    from rich.table import Table

    from cirbench.commands.core import user_errors
    from cirbench.synth.text_stats import world_text_stats

    with user_errors():
        stats = world_text_stats(world)
    if as_json:
        typer.echo(json.dumps(stats, indent=1))
        return
    table = Table(title=f"vague vs detailed texts, {stats['pairs']} train+val pairs of {world}")
    rows = [
        ("texts", "texts", "{:d}"),
        ("mean words per text", "mean_words", "{:.1f}"),
        ("vocabulary (distinct words)", "vocabulary", "{:d}"),
        ("changed attributes stated (recall)", "change_recall", "{:.1%}"),
        ("false attribute claims", "wrong_claims", "{:.1%}"),
        ("attribute claims per text", "claims_per_text", "{:.2f}"),
        ("attribute-oracle Recall@1 (val)", "oracle_recall_at_1", "{:.1f}"),
        ("attribute-oracle Recall@10 (val)", "oracle_recall_at_10", "{:.1f}"),
    ]
    table.add_column("measure")
    table.add_column("vague (FashionIQ-like)", justify="right")
    table.add_column("detailed (FACap-like)", justify="right")
    for label, key, fmt in rows:
        table.add_row(label, fmt.format(stats["vague"][key]), fmt.format(stats["detailed"][key]))
    Console().print(table)
    image_only = stats["image_only"]
    typer.echo(f"attribute oracle without text (image similarity alone), val: Recall@1 "
               f"{image_only['oracle_recall_at_1']:.1f}, Recall@10 {image_only['oracle_recall_at_10']:.1f}")


def synth_backbones(
    world: Annotated[Path, typer.Option("--world", help="A folder written by cirbench synth.")],
    steps: Annotated[int, typer.Option(help="Pre-training steps per backbone.")] = 300,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    seed: Annotated[int, typer.Option()] = 0,
    ship: Annotated[bool, typer.Option("--ship", help="Maintainers: also store them in the package (float16).")] = False,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads (1 is fastest for tiny models).")] = 1,
) -> None:
    """Pre-train the tiny CLIP (contrast, ~3 min) and the tiny BLIP-2 (contrast + matching, ~12 min)
    on the world's image-caption pairs into WORLD/backbones/ (for the default world: the shipped pair, in
    seconds). Reused while the settings match. From then on the synth_tiny model variants of every
    command use them (recorded in $CIRBENCH_CACHE or ~/.cache/cirbench); CIRBENCH_SYNTH_CLIP and
    CIRBENCH_SYNTH_BLIP2 still override.

    Example: cirbench synth-backbones --world world
    """
    from cirbench.commands.core import user_errors
    from cirbench.progress import progress_bar
    from cirbench.synth.tiny_backbones import BackboneRecipe, ensure_backbones

    import torch

    torch.set_num_threads(threads)  # two threads on two busy cores run 15x slower (measured)
    recipe = BackboneRecipe(steps=steps, batch_size=batch_size, seed=seed)
    with user_errors(), progress_bar(transient=True) as progress:
        tasks: dict[str, int] = {}

        def advance(name: str, step: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"pre-training tiny {name}", total=total)
            progress.update(tasks[name], completed=step)

        dirs = ensure_backbones(world, recipe, advance)
        if ship:
            from cirbench.synth.tiny_backbones import ship_backbones

            typer.echo(f"shipped: {ship_backbones(world)}")
    for name, folder in dirs.items():
        typer.echo(f"{name}: {folder}")
    typer.echo("synth_tiny models now use these backbones (CIRBENCH_SYNTH_CLIP / CIRBENCH_SYNTH_BLIP2 override)")


def synth_probe(
    ctx: typer.Context,
    world: Annotated[Path, typer.Option("--world", help="A folder written by cirbench synth, with backbones/.")],
    backbone: Annotated[str, typer.Option(help="blip2, clip, or both.")] = "both",
    split: Annotated[str, typer.Option(help="FashionIQ-like split whose images are probed.")] = "val",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads (1 is fastest for tiny models).")] = 1,
    model: Annotated[str | None, typer.Option(help="Probe this CIR model instead: does it follow the words?")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="With --model: a trained model folder.")] = None,
    references: Annotated[int, typer.Option(min=1, help="With --model: reference images per category.")] = 60,
) -> None:
    """Which attributes the world's tiny backbones see: every FashionIQ-like image's detailed
    caption retrieves among its category's images; per backbone, how often the top image has
    exactly the caption's attributes, and per attribute how often it agrees, beside chance.
    An attribute near chance cannot be followed by any CIR model on that backbone.

    With --model: whether a CIR model follows the words. Each reference is composed with a short
    instruction per attribute value ("is red"); per attribute, how often the top image (reference
    left out) has the asked value, beside how often it has it when another value was asked.

    Example: cirbench synth-probe --world world --backbone blip2

    Example: cirbench synth-probe --world world --model fashionblip2:synth_tiny --checkpoint runs/demo/train/fblip2_s2/final
    """
    from dataclasses import asdict

    import torch
    from rich.console import Console
    from rich.table import Table

    from cirbench.commands.core import library_output_to_stderr, refuse_unused, user_errors
    from cirbench.errors import DataError
    from cirbench.synth.tiny_backbones import backbone_dirs
    from cirbench.synth.probe import backbone_scorer, probe_attributes

    torch.set_num_threads(threads)
    with user_errors():
        if model is not None:
            refuse_unused(ctx, "--model probes a CIR model, not the backbones", "backbone")
        else:
            refuse_unused(ctx, "for the probe of a CIR model (--model)", "checkpoint", "references")
    if model is not None:
        _follow_probe(world, model, checkpoint, split, references, as_json)
        return
    kinds = ["blip2", "clip"] if backbone == "both" else [backbone]
    with user_errors(), library_output_to_stderr(as_json):
        if not set(kinds) <= {"blip2", "clip"}:
            raise DataError("--backbone", backbone, "expected blip2, clip or both")
        probes = []
        for kind in kinds:
            folder = backbone_dirs(world)[kind]
            if not folder.is_dir():
                raise DataError(folder, kind, "no pre-trained backbone here; run `cirbench synth-backbones --world "
                                f"{world}` first")
            probes.append(probe_attributes(world, backbone_scorer(kind, folder), f"tiny {kind}", split))
    if as_json:
        typer.echo(json.dumps([asdict(p) for p in probes], indent=1))
        return
    table = Table(title=f"detailed caption -> image, {probes[0].captions} {split} images of {world}")
    table.add_column("measure")
    for probe in probes:
        table.add_column(probe.backbone, justify="right")
    table.add_column("chance", justify="right")
    table.add_row("exact attributes, Recall@1", *(f"{p.exact_at_1:.1f}" for p in probes), "")
    table.add_row("exact attributes, Recall@10", *(f"{p.exact_at_10:.1f}" for p in probes), "")
    for attribute, chance in probes[0].chance.items():
        table.add_row(f"top image's {attribute} agrees (%)", *(f"{p.agreement[attribute]:.1f}" for p in probes),
                      f"{chance:.1f}")
    Console().print(table)


def _follow_probe(world: Path, spec: str, checkpoint: Path | None, split: str, references: int, as_json: bool) -> None:
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from cirbench.commands.core import library_output_to_stderr, user_errors
    from cirbench.baselines.zoo import build_model
    from cirbench.synth.tiny_backbones import activate
    from cirbench.synth.follow import follow_probe, model_ranker
    from cirbench.synth.probe import probe_images

    with user_errors(), library_output_to_stderr(as_json):
        activate(world)  # synth_tiny variants read this world's backbones
        cir_model = build_model(spec, checkpoint).eval()
        groups = probe_images(world, split)
        probe = follow_probe(groups, model_ranker(cir_model, groups), spec, split, references)
    if as_json:
        typer.echo(json.dumps(asdict(probe), indent=1))
        return
    table = Table(title=f"{spec}{f' @ {checkpoint}' if checkpoint else ''}: short instructions, "
                        f"{references} {split} references per category of {world}")
    for column in ("attribute", "top image has the asked value (%)", "when another was asked (%)", "instructions"):
        table.add_column(column, justify="left" if column == "attribute" else "right")
    for attribute, followed in probe.followed.items():
        table.add_row(attribute, f"{followed:.1f}", f"{probe.control[attribute]:.1f}", str(probe.queries[attribute]))
    Console().print(table)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("synth-stats")(synth_stats)
    app.command("synth-backbones")(synth_backbones)
    app.command("synth-probe")(synth_probe)
