"""FACap construction commands: build-facap, build-enhfiq, facap-stats, quality-sheet,
quality-report, and ``bench pairing``. Library modules load inside the commands."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from cirbench.commands.core import library_output_to_stderr, refuse_unused, user_errors
from cirbench.devices import DEVICE_HELP, resolve_device


class Backend(str, Enum):
    offline = "offline"
    transformers = "transformers"
    openai = "openai"


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("build-facap")(build_facap)
    app.command("build-enhfiq")(build_enhfiq)
    app.command("facap-stats")(facap_stats)
    app.command("quality-sheet")(quality_sheet)
    app.command("quality-report")(quality_report)
    bench_app.command("pairing")(bench_pairing)


# Options shared by both builders (typer reads them as each command's parameter defaults).
WORLD = typer.Option(None, "--world", help="Synthetic world folder (default: the cached default world, written on first use).")
CLIP_MODEL = typer.Option(None, "--clip-model", show_default="ViT-L-14/openai; on the synthetic world its tiny CLIP (thumbnails without one)", help="Pairing encoder: NAME/PRETRAINED (open_clip), synth_tiny, local-dir:FOLDER or thumbnail.")
CAPTIONER = typer.Option(Backend.offline, "--captioner", help="Stage 1 backend: a caption per image.")
MODIFIER = typer.Option(Backend.offline, "--modifier", help="Stage 2 backend: a modification text per pair.")
CAPTIONER_MODEL = typer.Option(None, "--captioner-model", help="transformers: model id or folder (e.g. OpenGVLab/InternVL3-2B-hf); openai: served model name.")
MODIFIER_MODEL = typer.Option(None, "--modifier-model", help="transformers: model id or folder; openai: served model name (e.g. gpt-4o-mini).")
API_BASE = typer.Option(None, "--api-base", help="OpenAI-compatible server URL, e.g. http://localhost:8000/v1.")
API_KEY_ENV = typer.Option("CIRBENCH_OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key (the key itself is never written).")
CONCURRENCY = typer.Option(8, "--concurrency", min=1, help="openai: requests in flight.")
MAX_ATTEMPTS = typer.Option(5, "--max-attempts", min=1, help="openai: attempts per request before it is recorded as failed.")
TIMEOUT = typer.Option(120.0, "--timeout", min=0.1, help="openai: seconds per request.")
GEN_BATCH = typer.Option(8, "--generation-batch", min=1, help="transformers: images or pairs per generate call.")
MAX_NEW_TOKENS = typer.Option(128, "--max-new-tokens", min=1, help="Tokens generated per caption / text (paper: 128).")
SEED = typer.Option(0, "--seed", help="Seed of the random pick among the top-20.")
DEVICE = typer.Option("cpu", "--device", help="Device for the CLIP encoder and transformers backends: " + DEVICE_HELP)
QUIET = typer.Option(False, "--quiet", help="No progress bars.")


def _refuse_unused_backend_options(ctx: typer.Context, captioner: Backend, modifier: Backend) -> None:
    """The backend options that neither chosen backend reads are refused, not ignored."""
    kinds = {captioner.value, modifier.value}
    if "openai" not in kinds:
        refuse_unused(ctx, "for the openai backend (--captioner/--modifier openai)",
                      "api_base", "api_key_env", "concurrency", "max_attempts", "timeout")
    if "transformers" not in kinds:
        refuse_unused(ctx, "for the transformers backend", "generation_batch")
    if kinds == {"offline"}:
        refuse_unused(ctx, "the offline backends generate no tokens", "max_new_tokens")
    if captioner is Backend.offline:
        refuse_unused(ctx, "the offline captioner has no model", "captioner_model")
    if modifier is Backend.offline:
        refuse_unused(ctx, "the offline modifier has no model", "modifier_model")


def _stage_options(captioner_model: Optional[str], modifier_model: Optional[str], **shared) -> dict:
    """The captioner's and the modifier's BackendOptions: their own model, the rest shared."""
    from cirbench.facap.backends import BackendOptions

    return {"captioner_options": BackendOptions(model=captioner_model, **shared),
            "modifier_options": BackendOptions(model=modifier_model, **shared)}


def _world(world: Optional[Path], quiet: bool) -> Path:
    from cirbench.synth.default_world import ensure_world

    return ensure_world(world, progress=not quiet)


def build_facap(
    ctx: typer.Context,
    fashion200k: Optional[Path] = typer.Option(None, "--fashion200k", help="Fashion200k folder (labels/, women/)."),
    deepfashion_mm: Optional[Path] = typer.Option(None, "--deepfashion-mm", help="DeepFashion-MultiModal folder (image/, captions.json, labels/)."),
    folder: Optional[Path] = typer.Option(None, "--folder", help="Any image folder, with --metadata."),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="JSONL for --folder, one object per image: path, category (optional: product_id, description, attributes)."),
    world: Optional[Path] = WORLD,
    out: Path = typer.Option(Path("facap"), "--out", help="Output folder (work/ inside keeps the resumable stage stores)."),
    clip_model: Optional[str] = CLIP_MODEL,
    captioner: Backend = CAPTIONER,
    modifier: Backend = MODIFIER,
    captioner_model: Optional[str] = CAPTIONER_MODEL,
    modifier_model: Optional[str] = MODIFIER_MODEL,
    api_base: Optional[str] = API_BASE,
    api_key_env: str = API_KEY_ENV,
    concurrency: int = CONCURRENCY,
    max_attempts: int = MAX_ATTEMPTS,
    timeout: float = TIMEOUT,
    generation_batch: int = GEN_BATCH,
    max_new_tokens: int = MAX_NEW_TOKENS,
    seed: int = SEED,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use only the first N images of each source (by id)."),
    device: str = DEVICE,
    quiet: bool = QUIET,
) -> None:
    """Build FACap-style triplets: CLIP pairing, a caption per image, a modification text per pair.

    With no source flag, builds from the synthetic world with the offline backends. Resumable:
    rerun the same command after an interruption; failed annotations are retried on rerun.

    Example: cirbench build-facap --fashion200k data/fashion200k --deepfashion-mm data/deepfashion_mm --out facap
    """
    from cirbench.facap import build
    from cirbench.facap.embedding import DEFAULT_CLIP
    from cirbench.facap.pipeline import PipelineSettings

    if (folder is None) != (metadata is None):
        raise typer.BadParameter("--folder and --metadata go together")
    specs = [build.SourceSpec(k, p) for k, p in (("fashion200k", fashion200k), ("deepfashion_mm", deepfashion_mm)) if p]
    specs += [build.SourceSpec("folder", folder, metadata)] if folder else []
    with user_errors():
        _refuse_unused_backend_options(ctx, captioner, modifier)
        if specs:
            refuse_unused(ctx, "the synthetic world is the input only when no source is given", "world")
        device = resolve_device(device)
        world_dir = _world(world, quiet) if not specs else None
        embedder = _world_embedder(clip_model, world_dir, device) if world_dir else None
        config = build.FacapBuildConfig(
            out=out, sources=tuple(specs) or build.world_sources(world_dir),
            clip_model=clip_model or DEFAULT_CLIP,
            captioner=captioner.value, modifier=modifier.value,
            **_stage_options(captioner_model, modifier_model, base_url=api_base, api_key_env=api_key_env,
                             concurrency=concurrency, max_attempts=max_attempts, timeout_s=timeout,
                             batch_size=generation_batch, max_new_tokens=max_new_tokens, device=device),
            limit=limit, device=device, settings=PipelineSettings(seed=seed, progress=not quiet),
        )
        sources = build.read_sources(config)  # bad data fails before any model loads
        manifest = build.build_facap(config, *_backends(config, embedder), sources=sources)
    _report_build(manifest, out)


def _world_embedder(clip_model: Optional[str], world_dir: Path, device: str):
    """On the synthetic world, the default encoder is the world's own pre-trained tiny CLIP."""
    from rich.console import Console

    from cirbench.synth.default_world import world_embedder

    embedder, note = _run_backend_errors(lambda: world_embedder(clip_model, world_dir, device))
    if note:
        Console(stderr=True).print(f"note: {note}", style="yellow", markup=False)
    return embedder


def _backends(config, embedder=None) -> tuple:
    """(embedder, captioner, modifier) of a build config, made before any work starts. The offline
    captioner reads the attributes of images without metadata with the pairing CLIP, if any."""
    from cirbench.facap.backends import make_annotators

    return _run_backend_errors(lambda: make_annotators(config, embedder))


def _run_backend_errors(run):
    """Set-up problems (no model given, no server URL) are usage errors; bad data and weights that
    are not on this machine are one line (user_errors), naming the file or what to download."""
    from cirbench.errors import DataError

    try:
        return run()
    except (DataError, FileNotFoundError):
        raise
    except (ValueError, OSError, RuntimeError) as exc:
        raise typer.BadParameter(str(exc)) from None


def _report_build(manifest: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    counts = manifest["counts"]
    table = Table(title=f"{out}  ({manifest['format']})")
    table.add_column("category")
    table.add_column("triplets", justify="right")
    for category, n in counts["triplets_per_category"].items():
        table.add_row(category, str(n))
    table.add_row("total", str(counts["triplets"]), style="bold")
    console = Console()
    console.print(table)
    unfinished = {k: v for k, v in counts["unfinished"].items() if v}
    if unfinished:
        Console(stderr=True).print(f"incomplete: {unfinished} (failures recorded; rerun the same command to retry them)", style="yellow")
        raise typer.Exit(3)


def build_enhfiq(
    ctx: typer.Context,
    fashioniq: Optional[Path] = typer.Option(None, "--fashioniq", help="FashionIQ folder (captions/, image_splits/, images/); default: the synthetic world's."),
    world: Optional[Path] = WORLD,
    out: Path = typer.Option(Path("enhfashioniq"), "--out", help="Output folder, in FashionIQ layout."),
    category: List[str] = typer.Option([], "--category", help="Only these categories (repeatable)."),
    clip_model: Optional[str] = CLIP_MODEL,
    captioner: Backend = CAPTIONER,
    modifier: Backend = MODIFIER,
    captioner_model: Optional[str] = CAPTIONER_MODEL,
    modifier_model: Optional[str] = MODIFIER_MODEL,
    api_base: Optional[str] = API_BASE,
    api_key_env: str = API_KEY_ENV,
    concurrency: int = CONCURRENCY,
    max_attempts: int = MAX_ATTEMPTS,
    timeout: float = TIMEOUT,
    generation_batch: int = GEN_BATCH,
    max_new_tokens: int = MAX_NEW_TOKENS,
    seed: int = SEED,
    device: str = DEVICE,
    quiet: bool = QUIET,
) -> None:
    """Build enhFashionIQ: one re-annotated triplet per FashionIQ val image, in FashionIQ layout.

    Each val image is a reference, paired within its category by the FACap CLIP pairing and
    annotated by the same two stages. FashionIQ images carry no metadata: the offline captioner
    describes them with the attributes the pairing CLIP reads off them (zero-shot). Resumable
    like build-facap.

    Example: cirbench build-enhfiq --fashioniq data/fashioniq --out data/enhfashioniq --captioner openai --modifier openai --api-base http://localhost:8000/v1 --captioner-model internvl --modifier-model qwen
    """
    from cirbench.facap import enhfiq
    from cirbench.facap.embedding import DEFAULT_CLIP
    from cirbench.facap.pipeline import PipelineSettings

    with user_errors():
        _refuse_unused_backend_options(ctx, captioner, modifier)
        if fashioniq is not None:
            refuse_unused(ctx, "the synthetic world's FashionIQ-like split is the input only without --fashioniq", "world")
        device = resolve_device(device)
        world_dir = _world(world, quiet) if fashioniq is None else None
        embedder = _world_embedder(clip_model, world_dir, device) if world_dir else None
        config = enhfiq.EnhFiqBuildConfig(
            fashioniq=fashioniq or world_dir / "fashioniq", out=out, categories=tuple(category) or None,
            clip_model=clip_model or DEFAULT_CLIP,
            captioner=captioner.value, modifier=modifier.value,
            **_stage_options(captioner_model, modifier_model, base_url=api_base, api_key_env=api_key_env,
                             concurrency=concurrency, max_attempts=max_attempts, timeout_s=timeout,
                             batch_size=generation_batch, max_new_tokens=max_new_tokens, device=device),
            device=device, settings=PipelineSettings(seed=seed, progress=not quiet),
        )
        records = enhfiq.val_records(config.fashioniq, config.categories)  # bad data fails before any model loads
        manifest = enhfiq.build_enhfiq(config, *_backends(config, embedder), by_category=records)
    _report_build(manifest, out)


def facap_stats(
    root: Optional[Path] = typer.Argument(None, help="A FACap-layout folder (cir_triplets/, image_captions/)."),
    fashioniq: Optional[Path] = typer.Option(None, "--fashioniq", help="A FashionIQ-layout folder to put next to it."),
    split: str = typer.Option("train", "--split", help="FashionIQ split to count (the paper's Table 1 counts train)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per dataset instead of the table."),
) -> None:
    """Dataset statistics in the paper's Table 1 layout (images, triplets, vocabulary, length).

    Example: cirbench facap-stats facap --fashioniq data/fashioniq
    """
    from cirbench.facap import dataset_stats as stats

    if root is None and fashioniq is None:
        raise typer.BadParameter("give a FACap folder, --fashioniq DIR, or both")
    with user_errors():
        rows = ([stats.facap_stats(root)] if root else []) + ([stats.fashioniq_stats(fashioniq, split)] if fashioniq else [])
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json()))
        return
    _print_stats_table(rows)


def _print_stats_table(rows) -> None:
    from rich.table import Table

    from cirbench.report.table_formats import print_wide

    table = Table(title="Dataset statistics (paper Table 1 layout)")
    for name in ("dataset", "unique images", "triplets", "mod. vocab", "mod. avg len", "image-caption pairs", "caption vocab", "caption avg len"):
        table.add_column(name, justify="left" if name == "dataset" else "right")
    for row in rows:
        mod, cap = row.modification_texts, row.captions
        table.add_row(row.name, f"{row.unique_images:,}", f"{row.triplets:,}", f"{mod.vocabulary:,}", _num(mod.average_length),
                      f"{row.image_caption_pairs:,}" if cap else "-", f"{cap.vocabulary:,}" if cap else "-", _num(cap.average_length) if cap else "-")
    print_wide(table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def quality_sheet(
    root: Path = typer.Argument(..., help="A FACap-layout folder, or a FashionIQ-layout folder (then --split)."),
    out: Path = typer.Option(..., "--out", help="Sheet path stem: writes OUT.csv and OUT.html."),
    n: int = typer.Option(216, "--n", min=1, help="Triplets to sample (stratified by category; paper: 216)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    split: str = typer.Option("val", "--split", help="FashionIQ-layout folders: the split to sample."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Official FACap release: folder its image paths are relative to."),
) -> None:
    """Sample triplets into a rating sheet (CSV to fill, HTML with both images and the text).

    Example: cirbench quality-sheet facap --n 216 --out sheets/facap
    """
    from cirbench.facap import quality

    with user_errors():
        items = quality.stratified_sample(quality.load_items(root, split, image_root), n, seed)
        csv_path, html_path = quality.write_sheet(items, out)
    typer.echo(f"{len(items)} triplets -> {csv_path} (ratings) and {html_path} (to view)")


def quality_report(
    sheets: List[Path] = typer.Argument(..., help="Filled sheets (one per rater; several datasets allowed)."),
    auto_faithfulness: Optional[Path] = typer.Option(None, "--auto-faithfulness", help="Synthetic world folder (or its ground_truth/attributes.jsonl): also score faithfulness automatically."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Mean ± std per criterion over all raters (paper Table 2 layout); automatic faithfulness on the synthetic world.

    Example: cirbench quality-report sheets/facap_rater1.csv sheets/facap_rater2.csv --auto-faithfulness ~/.cache/cirbench/worlds/default-seed0-format2
    """
    from cirbench.facap import quality

    with user_errors():
        summary = quality.summarise_ratings(sheets)
        auto = {}
        if auto_faithfulness:
            rows = [row for sheet in sheets for row in quality.read_ratings(sheet)]
            auto = quality.auto_faithfulness(rows, quality.read_ground_truth(auto_faithfulness))
    if as_json:
        typer.echo(json.dumps(_report_json(summary, auto), indent=2))
        return
    _print_quality_table(summary, auto)


def _report_json(summary: dict, auto: dict) -> dict:
    from dataclasses import asdict

    report = {d: {c: asdict(s) for c, s in per.items()} for d, per in summary.items()}
    for dataset, score in auto.items():
        report.setdefault(dataset, {})["auto_faithfulness"] = {**asdict(score), "precision": score.precision, "recall": score.recall}
    return report


def _print_quality_table(summary: dict, auto: dict) -> None:
    from rich.table import Table

    from cirbench.facap.quality import CRITERIA
    from cirbench.report.table_formats import print_wide

    table = Table(title="Annotation quality (paper Table 2 layout): mean ± std over all ratings")
    table.add_column("dataset")
    for criterion in CRITERIA:
        table.add_column(criterion.capitalize(), justify="right")
    table.add_column("ratings", justify="right")
    if auto:
        table.add_column("auto precision", justify="right")
        table.add_column("auto recall", justify="right")
    for dataset in sorted(summary.keys() | auto.keys()):
        per = summary.get(dataset, {})
        cells = [str(per[c]) if c in per else "-" for c in CRITERIA]
        cells.append(str(max((s.ratings for s in per.values()), default=0)))
        if auto:
            score = auto.get(dataset)
            cells += [_num(score.precision) if score else "-", _num(score.recall) if score else "-"]
        table.add_row(dataset, *cells)
    print_wide(table)


def bench_pairing(
    n: int = typer.Option(227_680, "--n", min=100, help="Images (FACap: 227,680)."),
    dim: int = typer.Option(768, "--dim", min=2, help="Embedding size (ViT-L-14: 768)."),
    seed: int = typer.Option(0, "--seed"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Runs of each per category; the fastest counts (steadier on a busy machine)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Time the FACap pairing next to a bare FAISS exact top-21 search of the same shapes; peak memory.

    Example: cirbench bench pairing --n 227680 --dim 768 --json
    """
    from cirbench.facap.bench_pairing import bench_pairing as run

    with library_output_to_stderr(as_json):
        report = run(n, dim, seed, repeats)
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(
        f"pairing {n:,} x {dim} in {len(report['categories'])} categories, {report['threads']} threads: "
        f"ours {report['ours_s']:.2f} s, bare FAISS top-21 {report['bare_s']:.2f} s, "
        f"ratio {report['ratio']:.3f}, peak RSS {report['peak_mb']:.0f} MB"
    )
