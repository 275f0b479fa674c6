"""``cirbench demo``: the paper's experimental design in miniature, on the synthetic world, offline.

Steps (each reused when already done, so a rerun or an interrupted run loses nothing):
world -> tiny pre-trained backbones -> FACap-style set (build-facap) -> enhFashionIQ-style set
(build-enhfiq) -> tiny trainings from recipes -> every model on both benchmarks -> Table-3 style
tables, the paper's findings with paired tests, the data-size curve, qualitative grids, HTML report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

from cirbench.experiments.evaluate_all import BenchmarkEntry, ModelEntry, evaluate_all
from cirbench.experiments.plan import Plan, Training

Log = Callable[[str], None]


def run_demo(
    plan: Plan, out: Path, *, world: Path | None = None, threads: int = 1, progress: bool = True, log: Log = print
) -> dict:
    """Run ``plan`` into ``out``; returns the paths of what it wrote.

    ``threads``: torch CPU threads. One is the default: the tiny models are too small for two
    threads to pay off, and two threads collapse (15x slower, measured) when anything else
    competes for one of two cores."""
    import torch

    torch.set_num_threads(threads)
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(" ".join(["cirbench", *sys.argv[1:]]) + "\n")
    world = _world(world, progress, log)
    data = _build_datasets(world, out, progress, log)
    finals = {t.key: train_one(t, data, out, plan.batch_size, progress, log) for t in plan.trainings}
    results = out / "results"
    errors = evaluate_all(_model_entries(plan, finals), _benchmarks(data), results,
                          cache_dir=out / "cache", batch_size=128, progress=progress, log=log)
    written = write_reports(plan, results, data, finals, log)
    log(f"demo finished in {time.time() - start:.0f} s")
    return {**written, "errors": errors}


def _world(world: Path | None, progress: bool, log: Log) -> Path:
    from cirbench.facap.world import ensure_world
    from cirbench.synth.backbones import ensure_backbones

    world = ensure_world(world, progress)
    log(f"world: {world}")
    ensure_backbones(world)
    return world


def _build_datasets(world: Path, out: Path, progress: bool, log: Log) -> dict[str, Path]:
    from cirbench.facap.build import FacapBuildConfig, build_facap, world_sources
    from cirbench.facap.enhfiq import EnhFiqBuildConfig, build_enhfiq
    from cirbench.facap.world import world_embedder

    embedder, note = world_embedder(None, world)
    if note:
        log(note)
    facap, enhfiq = out / "data" / "facap", out / "data" / "enhfashioniq"
    build_facap(FacapBuildConfig(out=facap, sources=world_sources(world)), embedder=embedder)
    log(f"FACap-style set: {facap}")
    build_enhfiq(EnhFiqBuildConfig(fashioniq=world / "fashioniq", out=enhfiq), embedder=embedder)
    log(f"enhFashionIQ-style set: {enhfiq}")
    fashioniq = out / "data" / "fashioniq"  # beside enhfashioniq/, so `eval --all --data-root <out>/data` finds both
    if not fashioniq.exists():
        fashioniq.symlink_to((world / "fashioniq").resolve(), target_is_directory=True)
    return {"facap": facap, "fashioniq": fashioniq, "enhfashioniq": enhfiq}


def train_one(training: Training, data: dict[str, Path], out: Path, batch_size: int, progress: bool, log: Log) -> Path:
    """Train one plan entry (or reuse its finished model); returns its final model folder."""
    from cirbench.config import apply_overrides, load_recipe
    from cirbench.train.recipe_run import train_from_recipe

    run_dir = out / "train" / training.key
    final = run_dir / "final"
    if (final / "config.json").is_file():
        log(f"reused: {training.key}")
        return final
    overrides = [f"data.root={data[training.data]}", "eval=null", "train.epochs=null",
                 f"train.steps={training.steps}", f"train.batch_size={batch_size}"]
    if training.init_from:
        overrides.append(f"model.init_from={out / 'train' / training.init_from / 'final'}")
    config = apply_overrides(load_recipe(training.recipe), overrides + list(training.overrides))
    resume = (run_dir / "checkpoints").is_dir()
    log(f"training {training.key}: {training.recipe} ({training.steps} steps{', resumed' if resume else ''})")
    train_from_recipe(training.model, config, Path(training.recipe), run_dir, resume=resume, progress=progress)
    return final


def _model_entries(plan: Plan, finals: dict[str, Path]) -> list[ModelEntry]:
    zero_shot = [ModelEntry(label, spec) for label, spec in plan.zero_shot]
    trained = [ModelEntry(t.label or t.key, t.model, finals[t.key]) for t in plan.trainings]
    return zero_shot + trained


def _benchmarks(data: dict[str, Path]) -> list[BenchmarkEntry]:
    return [BenchmarkEntry("fashioniq", data["fashioniq"]), BenchmarkEntry("enhfashioniq", data["enhfashioniq"])]


def write_reports(plan: Plan, results: Path, data: dict[str, Path], finals: dict[str, Path], log: Log) -> dict:
    """Tables, findings, data-size plot, a qualitative grid and the HTML report of ``results``."""
    from rich.console import Console

    from cirbench.report.html import write_html_report
    from cirbench.report.tables import build_tables, print_wide, to_rich, write_tables
    from cirbench.results import read_ranks, read_records

    records, ranks = read_records([results]), read_ranks([results])
    tables = build_tables(records, ranks, ci=True)
    console = Console()
    for table in tables:
        print_wide(to_rich(table, ci=False), console)
    write_tables(tables, results / "tables", ci=True)
    labels = {t.key: t.label or t.key for t in plan.trainings}
    findings_text = _findings(plan, ranks, labels)
    if findings_text:
        (results / "findings.txt").write_text(findings_text + "\n")
        console.print(findings_text, markup=False, highlight=False)
    plots = _data_size_plot(plan, tables, labels, results / "plots")
    grid = _grid(plan, ranks, data, finals, results / "grids")
    report = write_html_report(results, results / "report.html", title=f"cirbench demo ({plan.name})")
    log(f"results: {results}/results.jsonl\ntables: {results / 'tables'}\nreport: {report}")
    return {"results": results, "report": report, "plots": plots, "grid": grid}


def _findings(plan: Plan, ranks: list[dict], labels: dict[str, str]) -> str:
    from cirbench.report.findings import format_findings, paired_finding, select_rows

    findings = []
    for question in plan.questions:
        for dataset in ("fashioniq", "enhfashioniq"):
            a = select_rows(ranks, label=labels[question.a], dataset=dataset)
            b = select_rows(ranks, label=labels[question.b], dataset=dataset)
            if a and b:
                findings.append(paired_finding(_latest(a), _latest(b), label=question.title))
    return format_findings(findings) if findings else ""


def _latest(rows: list[dict]) -> list[dict]:
    """One row per category: the newest run's (reruns append to the same folder)."""
    newest: dict[str, dict] = {}
    for row in rows:
        if row["category"] not in newest or row["run_id"] > newest[row["category"]]["run_id"]:
            newest[row["category"]] = row
    return list(newest.values())


def _data_size_plot(plan: Plan, tables, labels: dict[str, str], out_dir: Path) -> list[Path]:
    from cirbench.report.plots import curve_points, plot_data_size_curve

    if not plan.data_size:
        return []
    points = [p for fraction, key in plan.data_size for p in curve_points(fraction, tables, model=labels[key])]
    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_data_size_curve(points, out_dir / "data_size")


def _grid(plan: Plan, ranks: list[dict], data: dict[str, Path], finals: dict[str, Path], out_dir: Path) -> Path | None:
    """Figure-6 style grid: FashionBLIP-2 (FACap -> FIQ) on the FashionIQ-like dress split."""
    from cirbench.data.fashioniq import load_eval_splits
    from cirbench.eval.protocols import FASHIONIQ_V1
    from cirbench.interface import build_model
    from cirbench.report.findings import select_rows
    from cirbench.report.grids import pick_queries, qualitative_grid

    main = next((t for t in plan.trainings if t.key == "fblip2_s2"), None)
    if main is None:
        return None
    split = load_eval_splits(data["fashioniq"], categories=["dress"])[0]
    rows = _latest(select_rows(ranks, label=main.label, dataset="fashioniq", category="dress"))
    if not rows:
        return None
    model = build_model(main.model, checkpoint=finals[main.key])
    indices = pick_queries(split, rows[0], k=5, n_hits=3, n_misses=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    return qualitative_grid(model, split, FASHIONIQ_V1, indices, out_path=out_dir / "fashionblip2_dress.png", k=5)


def summary_json(written: dict) -> str:
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in written.items()}, default=str, indent=2)
