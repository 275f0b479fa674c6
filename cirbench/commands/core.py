"""Core commands: ``models``, ``eval``, ``table``, ``compare`` and ``bench eval``.

Thin: options -> library calls. torch, numpy and the evaluator load inside the commands, so
``cirbench --help`` stays fast.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from cirbench.errors import DataError
from cirbench.devices import DEVICE_HELP, PRECISION_HELP
from cirbench.files import check_writable_folder


class Missing(str, Enum):
    error = "error"
    skip = "skip"


class TableFormat(str, Enum):
    rich = "rich"
    markdown = "markdown"
    csv = "csv"
    latex = "latex"


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("eval")(eval_model)
    app.command("table")(table)
    app.command("report")(report)
    app.command("compare")(compare)
    bench_app.command("eval")(bench_eval)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _print_wide(renderable) -> None:
    from cirbench.report.table_formats import print_wide

    print_wide(renderable, _console())


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input (data, names, mismatched runs, missing files) ends the command with its one-line
    message, not a traceback; markup is off because messages quote file contents."""
    from cirbench.eval.metrics import ComparisonError
    from cirbench.registry import RegistryError

    try:
        yield
    except (DataError, RegistryError, ComparisonError, FileNotFoundError) as exc:
        _console(stderr=True).print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def refuse_unused(ctx, why: str, *names: str) -> None:
    """Refuse the options among ``names`` (parameter names) that were given on the command line
    but would be ignored by this invocation: one line naming the first one and ``why``.

    Every command calls it where an option acts only in some modes (``eval --all``, ``doctor
    --gpu``, ...): an option either acts or is refused, never ignored without a word."""
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name in names else None
        # by name: typer may carry its own copy of click's ParameterSource enum
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            raise DataError("command line", param.opts[0], f"not used here: {why}")


@contextmanager
def library_output_to_stderr(active: bool = True) -> Iterator[None]:
    """Around the work of a ``--json`` command (not its final print), so that stdout holds exactly
    the command's JSON whatever the libraries print: anything printed goes to stderr, and the hub's
    and transformers' progress bars ("Loading weights", "Writing model shards") are off."""
    import os
    import sys
    from contextlib import redirect_stdout

    if not active:
        yield
        return
    bars = "HF_HUB_DISABLE_PROGRESS_BARS"
    previous = os.environ.get(bars)
    os.environ[bars] = "1"  # read when huggingface_hub / transformers are imported
    restore = _disable_loaded_progress_bars()
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        restore()
        if previous is None:
            os.environ.pop(bars, None)
        else:
            os.environ[bars] = previous


def _disable_loaded_progress_bars():
    """Turn off the progress bars of huggingface_hub / transformers if already imported; returns the undo."""
    import sys

    undo = []
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        if not are_progress_bars_disabled():
            disable_progress_bars()
            undo.append(enable_progress_bars)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            undo.append(hf_logging.enable_progress_bar)
    return lambda: [step() for step in undo]


# ---- models ----------------------------------------------------------------------------------


def models(
    params: bool = typer.Option(False, "--params", help="Also show the parameter counts of the full-size models."),
) -> None:
    """List every registered model and variant (any listed spec works with --model).

    Example: cirbench models --params
    """
    from rich.table import Table

    from cirbench.baselines.zoo import MODELS, list_model_specs

    table = Table(title="Registered models (spec = name:variant)")
    table.add_column("spec", no_wrap=True)
    table.add_column("default")
    table.add_column("variant", max_width=60)
    table.add_column("model", max_width=60)
    previous = None
    for name, variant, description in list_model_specs():
        entry = MODELS.entry(name)
        if previous is not None and name != previous:
            table.add_section()
        is_default = "✓" if variant == entry.metadata["default_variant"] else ""
        table.add_row(f"{name}:{variant}", is_default, description, entry.description if name != previous else "")
        previous = name
    _print_wide(table)
    if params:
        _print_parameter_counts()


def _print_parameter_counts() -> None:
    from rich.table import Table

    try:
        from cirbench.baselines.params import full_size_parameter_counts
    except ImportError as exc:
        _console(stderr=True).print(
            f"parameter counts are not available: cirbench.baselines.params cannot be imported ({exc})",
            style="red", markup=False,
        )
        raise typer.Exit(1) from None
    table = Table(title="Parameter counts of the full-size models (built on the meta device, no weights)")
    table.add_column("model")
    table.add_column("parameters", justify="right")
    for what, count in full_size_parameter_counts():
        table.add_row(what, f"{count:,}")
    _print_wide(table)


# ---- eval ------------------------------------------------------------------------------------


def eval_model(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", help="Without --all: model spec name[:variant]; see `cirbench models`."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Without --all: benchmark name, e.g. fashioniq, enhfashioniq."),
    data_root: Path = typer.Option(..., "--data-root", help="The benchmark's folder (FashionIQ layout); with --all, the folder holding one subfolder per benchmark (fashioniq/, enhfashioniq/)."),
    all_: bool = typer.Option(False, "--all", help="Every trained model under --runs and every zero-shot model x every benchmark under --data-root; failures become error rows; finished results are reused."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="With --all only: where trained models (*/final/) are looked for."),
    zero_shot: str = typer.Option("clip_image_only,clip_text_only,clip_sum", "--zero-shot", help="With --all only: comma-separated zero-shot model specs."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Without --all: the model folder written by training or import-weights (save_pretrained)."),
    split: str = typer.Option("val", "--split", help="Split to evaluate (with --all: on every benchmark)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma-separated, e.g. dress,shirt (default: all; with --all: on every benchmark)."),
    missing: Missing = typer.Option(Missing.error, "--missing", help="Queries whose images are missing: stop, or skip them."),
    protocol: str = typer.Option("fashioniq/v1", "--protocol", help="Evaluation protocol id."),
    out: Optional[Path] = typer.Option(None, "--out", show_default="runs/<timestamp>-<model>-<dataset>", help="Run folder for results.jsonl and ranks.jsonl (appended)."),
    show_table: bool = typer.Option(False, "--table", help="Print the Table-3 layout of this run."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", show_default="features/ under $CIRBENCH_CACHE, else ~/.cache/cirbench/features", help="Where encoded galleries are cached."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode galleries afresh and cache nothing."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per encoder batch."),
    chunk_size: int = typer.Option(1024, "--chunk-size", min=1, help="Queries scored at once."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP + " bf16 also holds the frozen ViT's weights in bf16."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, show_default="0 on CPU, up to 8 on CUDA", help="Image decoding worker processes."),
    seed: int = typer.Option(0, "--seed", help="Seed for torch and the bootstrap intervals."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars (without them, or without a terminal: one line per stage)."),
) -> None:
    """Evaluate one model on one benchmark: target ranks, Recall@K with 95% intervals, records.

    Example: cirbench eval --model clip_sum:test_tiny --dataset fashioniq --data-root data/fashioniq --table

    Example: cirbench eval --all --table --data-root runs/demo/data --runs runs/demo/train --zero-shot clip_sum:synth_tiny
    """
    from cirbench.data.benchmarks import DATASETS
    from cirbench.eval.protocols import get_protocol
    from cirbench.experiments.evaluate_all import build_for_evaluation
    from cirbench.baselines.zoo import resolve_spec
    from cirbench.model_folder import folder_config_hash

    from cirbench.devices import resolve_device, resolve_precision
    from cirbench.eval.evaluator import default_num_workers

    with user_errors():
        device = resolve_device(device)
        options = EvalOptions(device, resolve_precision(precision, device), batch_size, chunk_size,
                              default_num_workers(device) if num_workers is None else num_workers, progress)
        wanted = _category_list(categories)
    if all_:
        with user_errors():
            refuse_unused(ctx, "--all evaluates every trained model under --runs and every benchmark under --data-root",
                          "model", "dataset", "checkpoint")
        benchmarks = dict(split=split, categories=wanted, missing=missing.value)
        return _eval_all(data_root, runs, zero_shot, out, protocol, benchmarks, cache_dir, no_cache, options, seed,
                         show_table)
    with user_errors():
        refuse_unused(ctx, "--runs and --zero-shot choose the models of --all", "runs", "zero_shot")
        if not model or not dataset:
            raise DataError("command line", "--model/--dataset", "give both (or --all)")
        spec = resolve_spec(model)
        eval_protocol = get_protocol(protocol)
        run_dir = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{str(spec).replace(':', '_')}-{dataset}"
        check_writable_folder(run_dir)  # before anything is encoded: the work would be lost at the end
        splits = DATASETS.get(dataset)(data_root, split=split, categories=list(wanted) if wanted else None,
                                       missing=missing.value)
        built = build_for_evaluation(str(spec), checkpoint, options.device, options.precision, seed)
        result = _evaluate(built, splits, eval_protocol, cache_dir, no_cache, options)
        records = _write_results(result, eval_protocol, run_dir, seed, folder_config_hash(checkpoint))
    _console().print(f"wrote {len(records)} records to {run_dir}", markup=False)
    if show_table:
        from cirbench.results import read_ranks

        _print_tables(records, read_ranks([run_dir]))


def _category_list(text: str | None) -> tuple[str, ...] | None:
    """``--categories`` as names (None: every category); an empty list or a repeated name is refused,
    since it would silently mean all categories, or results counted twice."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise DataError("--categories", repr(text), "names no category (leave it out for all)")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError("--categories", text, f"{', '.join(repeated)} named more than once")
    return tuple(names)


@dataclass(frozen=True)
class EvalOptions:
    """How ``eval`` runs, resolved from its options (device and precision by ``cirbench.devices``)."""

    device: str
    precision: str
    batch_size: int
    chunk_size: int
    num_workers: int
    progress: bool = True


def _evaluate(model, splits, protocol, cache_dir, no_cache, options: EvalOptions):
    from cirbench.eval.evaluator import evaluate
    from cirbench.eval.retrieval import default_cache_dir

    cache = None if no_cache else (cache_dir or default_cache_dir())
    return evaluate(model, splits, protocol, batch_size=options.batch_size, chunk_size=options.chunk_size,
                    cache_dir=cache, device=options.device, num_workers=options.num_workers,
                    precision=options.precision, progress=options.progress)


def _write_results(result, protocol, run_dir: Path, seed: int, config_hash: str | None) -> list[dict]:
    from cirbench.results import eval_records, new_run_id, rank_rows, write_run

    run_id = new_run_id()
    records = eval_records(result, protocol, run_id=run_id, seed=seed, config_hash=config_hash)
    write_run(run_dir, records, rank_rows(result, run_id=run_id, seed=seed))
    return records


def _print_tables(records: list[dict], ranks: list[dict], *, reported: bool = False, ci: bool = False,
                  errors: list[dict] | None = None) -> None:
    from cirbench.report.table_formats import to_rich
    from cirbench.report.tables import build_tables

    for built in build_tables(records, ranks, reported=reported, ci=ci, errors=errors or []):
        _print_wide(to_rich(built, ci=ci))


# ---- table -----------------------------------------------------------------------------------


def table(
    results: Optional[List[Path]] = typer.Argument(None, help="results.jsonl files, run folders or globs."),
    fmt: TableFormat = typer.Option(TableFormat.rich, "--format", help="Output format on the terminal."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write every table in all four formats here."),
    reported: bool = typer.Option(False, "--reported", help="Add the paper's printed rows, marked 'reported'."),
    ci: bool = typer.Option(False, "--ci", help="Show bootstrap 95% intervals."),
) -> None:
    """Render results as tables in the layout of the FACap paper's Table 3 (one per protocol).

    Example: cirbench table runs/ --reported --format markdown --out results/tables
    """
    from cirbench.report.table_formats import render, to_rich, write_tables
    from cirbench.report.tables import load_tables

    if not results and not reported:
        raise typer.BadParameter("give result files or run folders, or --reported")
    with user_errors():
        if out:
            check_writable_folder(out)
        tables = load_tables(results or [], reported=reported, ci=ci)
        if not tables:  # e.g. an empty results.jsonl, or one whose only line is torn
            raise DataError(", ".join(map(str, results)), "results", "no result records to tabulate")
    for built in tables:
        if fmt is TableFormat.rich:
            _print_wide(to_rich(built, ci=ci))
        else:
            typer.echo(render(built, fmt.value, ci=ci))
    if out:
        written = write_tables(tables, out, ci=ci)
        _console(stderr=True).print(f"wrote {len(written)} files to {out}", markup=False)


# ---- report ----------------------------------------------------------------------------------


def report(
    results: Path = typer.Argument(..., help="A results folder (results.jsonl, ranks.jsonl, report_plan.json, plots/, grids/)."),
    out: Optional[Path] = typer.Option(None, "--out", help="The HTML file (default: RESULTS/report.html)."),
    title: str = typer.Option("cirbench results", "--title"),
    reported: bool = typer.Option(False, "--reported", help="Add the paper's printed Table-3 rows, marked 'reported'."),
) -> None:
    """One self-contained HTML page for a results folder, built from its records: a summary
    (mean recall per model, and the difference from the text-blind baseline), plots, the paired
    findings and the paper tables its report plan names (written by the demo and the ablations),
    the Table-3 tables with intervals, grids (images embedded), and where the numbers come from.

    Example: cirbench report runs/ablate/results --title "FACap ablations"
    """
    from cirbench.report.html import write_html_report

    out = out or Path(results) / "report.html"
    with user_errors():
        check_writable_folder(out.parent, "--out")
        path = write_html_report(results, out, title=title, reported=reported)
    _console().print(f"report: {path}", markup=False)


# ---- compare ---------------------------------------------------------------------------------


def compare(
    run_a: Path = typer.Argument(..., help="Run folder (or results.jsonl) of run a."),
    run_b: Path = typer.Argument(..., help="Run folder (or results.jsonl) of run b."),
    model_a: Optional[str] = typer.Option(None, "--model-a", help="The model to take from run a when it holds several (eval --all, demo): its table label or its spec."),
    model_b: Optional[str] = typer.Option(None, "--model-b", help="The same for run b."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="The benchmark to compare on when the runs hold several."),
    k: List[int] = typer.Option([10, 50], "--k", min=1, help="Cut-offs to test (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the permutations."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per cut-off."),
) -> None:
    """Paired test of two runs on the same queries: Recall@K difference (averaged over categories),
    paired bootstrap 95% interval, sign-flip permutation p-value, McNemar counts.

    Example: cirbench compare runs/clip_sum runs/clip_image_only --k 10 --k 50

    Example: cirbench compare runs/demo/results runs/demo/results --model-a CLIP4CIR --model-b "CLIP image + text (zero-shot)" --dataset fashioniq
    """
    from dataclasses import asdict

    from cirbench.eval.metrics import paired_test
    from cirbench.results import pick_query_ranks

    with user_errors():
        ranks_a = pick_query_ranks(run_a, model_a, dataset, option="--model-a")
        ranks_b = pick_query_ranks(run_b, model_b, dataset, option="--model-b")
        tests = [paired_test(ranks_a, ranks_b, cutoff, seed=seed) for cutoff in k]
    if json_output:
        for test in tests:
            typer.echo(json.dumps(asdict(test)))
        return
    _print_wide(_paired_table(tests, run_a, run_b))


def _paired_table(tests, run_a: Path, run_b: Path):
    from rich.table import Table

    table = Table(title=f"a = {run_a}   b = {run_b}   (Recall@K averaged over categories)")
    for column in ("K", "a", "b", "a - b", "95% CI", "p (sign-flip)", "a only", "b only", "queries"):
        table.add_column(column, justify="right")
    for t in tests:
        table.add_row(
            str(t.k), f"{t.recall_a:.2f}", f"{t.recall_b:.2f}", f"{t.difference:+.2f}",
            f"[{t.ci_low:+.2f}, {t.ci_high:+.2f}]", f"{t.p_value:.4f}", str(t.a_only), str(t.b_only), f"{t.n_queries:,}",
        )
    return table


# ---- bench eval ------------------------------------------------------------------------------


def bench_eval(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object (ratio, peak_mb, times)."),
    chunk_size: int = typer.Option(1024, "--chunk-size", min=1, help="Queries scored at once."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed runs per path after one warm-up (best kept)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the random features."),
) -> None:
    """Time the evaluator's scoring + ranking on FashionIQ-val-sized random multihead features
    (12 x 256) against a bare matrix product of the same shapes, in the same run; peak memory.

    Example: cirbench bench eval --json
    """
    from cirbench.devices import resolve_device
    from cirbench.eval.bench_scoring import run_eval_bench

    with user_errors():
        device = resolve_device(device)
    with _console(stderr=True).status(f"timing both paths on three categories, best of {repeats} ..."), \
            library_output_to_stderr(json_output):
        report = run_eval_bench(chunk_size=chunk_size, repeats=repeats, seed=seed, device=device)
    if json_output:
        typer.echo(json.dumps(report))
        return
    _print_wide(_bench_table(report))


def _bench_table(report: dict):
    from rich.table import Table

    title = (f"evaluator scoring + ranking vs bare matmul — {report['device']}, {report['torch_threads']} torch threads, "
             f"chunk {report['chunk_size']}, best of {report['repeats']}")
    table = Table(title=title, caption=f"peak RSS {report['peak_mb']:.0f} MB (target < 2048; {report['peak_mb_before']:.0f} MB before the benchmark)")
    for column in ("category", "queries", "gallery", "ours (s)", "bare (s)", "ours / bare"):
        table.add_column(column, justify="right")
    for name, c in report["categories"].items():
        table.add_row(name, f"{c['queries']:,}", f"{c['gallery']:,}", f"{c['ours_s']:.3f}", f"{c['bare_s']:.3f}", f"{c['ratio']:.2f}")
    table.add_section()
    table.add_row("all", "", "", f"{report['ours_s']:.3f}", f"{report['bare_s']:.3f}", f"{report['ratio']:.2f} (target ≤ 1.3)")
    return table


def _eval_all(data_root: Path, runs: Path, zero_shot: str, out: Optional[Path], protocol: str, benchmark_options: dict,
              cache_dir: Optional[Path], no_cache: bool, options: EvalOptions, seed: int, show_table: bool) -> None:
    """``eval --all``: models x benchmarks through cirbench.experiments.evaluate_all."""
    from cirbench.eval.retrieval import default_cache_dir
    from cirbench.experiments.evaluate_all import ModelEntry, evaluate_all, find_benchmarks, trained_models
    from cirbench.baselines.zoo import resolve_spec
    from cirbench.results import read_errors, read_ranks, read_records

    with user_errors():
        benchmarks = find_benchmarks(data_root, **benchmark_options)
        if not benchmarks:
            raise DataError(data_root, "benchmarks", "no benchmark folder (fashioniq/, enhfashioniq/ with captions/) here")
        specs = [str(resolve_spec(s.strip())) for s in zero_shot.split(",") if s.strip()]
        models = [ModelEntry(f"{spec} (zero-shot)", spec) for spec in specs] + trained_models(runs)
        run_dir = out or Path("runs") / "eval-all"
        errors = evaluate_all(models, benchmarks, run_dir, protocol_id=protocol, device=options.device, seed=seed,
                              cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
                              log=lambda line: _console().print(line, markup=False, highlight=False),
                              batch_size=options.batch_size, chunk_size=options.chunk_size,
                              precision=options.precision, num_workers=options.num_workers, progress=options.progress)
        if show_table:
            _print_tables(read_records([run_dir]), read_ranks([run_dir]), errors=read_errors([run_dir]))
    for row in errors:
        _console().print(f"error row: {row['label']} on {row['dataset']}: {row['error']}", style="red", markup=False)
    _console().print(f"results: {run_dir}", markup=False)
    if errors:  # the other rows are written; the command still failed
        _console(stderr=True).print(f"error: {len(errors)} of {len(models) * len(benchmarks)} evaluations failed "
                                    f"(error rows above; {run_dir / 'errors.jsonl'})", style="red", markup=False)
        raise typer.Exit(1)
