"""``cirbench demo``: the paper's experimental design in miniature, on the synthetic world, offline.

Steps (each reused when already done, so a rerun or an interrupted run loses nothing):
world -> tiny pre-trained backbones -> FACap-style set (build-facap) -> enhFashionIQ-style set
(build-enhfiq) -> tiny trainings from recipes -> every model on both benchmarks -> Table-3 style
tables, the paper's findings with paired tests, the data-size curve, qualitative grids, HTML report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cirbench.experiments.plan import Plan
from cirbench.experiments.runner import Log, run_trainings

if TYPE_CHECKING:
    from cirbench.report.report_plan import FindingsSpec, PaperTableSpec


def run_demo(
    plan: Plan, out: Path, *, world: Path | None = None, threads: int = 1, jobs: int = 1, progress: bool = True,
    log: Log = print, device: str = "cpu", precision: str = "fp32",
) -> dict:
    """Run ``plan`` into ``out`` with ``jobs`` processes at once (training and evaluation on
    ``device``, evaluation at ``precision``); returns the paths of what it wrote."""
    start = time.time()
    run = run_trainings(plan.trainings, out, zero_shot=plan.zero_shot, world=world, batch_size=plan.batch_size,
                        threads=threads, jobs=jobs, progress=progress, log=log, device=device, precision=precision)
    written = write_reports(plan, run.results, run.data, run.finals, log)
    log(f"demo finished in {time.time() - start:.0f} s ({stage_seconds(out)})")
    return {**written, "errors": run.errors}


def stage_seconds(out: Path) -> str:
    """The run's time per stage in a few words, summed over its processes (``<out>/timings.json``)."""
    path = Path(out) / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    trainings = sum(v for k, v in timings.items() if k.startswith("train:"))
    evaluations = sum(v for k, v in timings.items() if k.startswith("eval:"))
    return f"data {timings.get('data', 0):.0f} s, trainings {trainings:.0f} s, evaluations {evaluations:.0f} s of work"


def write_reports(plan: Plan, results: Path, data: dict[str, Path], finals: dict[str, Path], log: Log) -> dict:
    """Tables, findings, data-size plot, a qualitative grid and the HTML report of ``results``;
    what the report shows besides the Table-3 tables is recorded in its report plan."""
    from rich.console import Console

    from cirbench.files import write_atomic
    from cirbench.report.findings import format_findings
    from cirbench.report.html import write_html_report
    from cirbench.report.report_plan import build_findings, build_paper_tables, record_plan
    from cirbench.report.table_formats import print_wide, to_rich, write_table, write_tables
    from cirbench.report.tables import build_tables
    from cirbench.results import read_results_folder

    records, ranks, errors = read_results_folder(results)
    tables = build_tables(records, ranks, ci=True, errors=errors)
    console = Console()
    for table in tables:
        print_wide(to_rich(table, ci=False), console)
    write_tables(tables, results / "tables", ci=True)
    labels = {t.key: t.label or t.key for t in plan.trainings}
    findings_specs = [_findings_spec(plan, labels)] if plan.questions else []
    findings = [f for spec in findings_specs for f in build_findings(spec, ranks)]
    if findings:
        findings_text = format_findings(findings, [title for spec in findings_specs for title in spec.asked])
        write_atomic(results / "findings.txt", findings_text + "\n")
        console.print(findings_text, markup=False, highlight=False)
    paper_specs = _paper_table_specs(plan)
    for table in build_paper_tables(paper_specs, tables):
        print_wide(to_rich(table, ci=True), console)
        write_table(table, results / "tables", ci=True)
    record_plan(results, paper_tables=paper_specs, findings=findings_specs)
    plots = _data_size_plot(plan, tables, labels, results / "plots")
    grid = _grid(plan, ranks, data, finals, results / "grids")
    report = write_html_report(results, results / "report.html", title=f"cirbench demo ({plan.name})")
    log(f"results: {results}/results.jsonl\ntables: {results / 'tables'}\nreport: {report}")
    return {"results": results, "report": report, "plots": plots, "grid": grid}


def _findings_spec(plan: Plan, labels: dict[str, str]) -> "FindingsSpec":
    from cirbench.experiments.runner import BENCHMARKS
    from cirbench.report.report_plan import FindingsSpec

    # a side that is no training is a zero-shot model's label (the text-blind baseline)
    questions = tuple((q.title, labels.get(q.a, q.a), labels.get(q.b, q.b)) for q in plan.questions)
    return FindingsSpec("findings", questions, tuple(q.title for q in plan.questions), BENCHMARKS)


def _paper_table_specs(plan: Plan) -> list["PaperTableSpec"]:
    """The paper's Table 4 (FashionBLIP-2 rows) and the data-size table, where the plan trained
    their models (the ablations' trainings share the demo's keys and labels); the full Table 5
    needs CIR-only models: `cirbench ablate components`."""
    from cirbench.experiments.ablations import Scale, data_size, pretraining
    from cirbench.report.report_plan import PaperTableSpec

    keys = {t.key for t in plan.trainings}
    scale = Scale("tiny", *(t.steps for t in plan.trainings if t.key in ("fblip2_s1", "fblip2_s2")))
    fractions = [fraction for fraction, _ in plan.data_size]
    note = ("measured: the demo's tiny models on the synthetic world; reported: the paper's (ViT-g, real data), "
            "so compare directions, not values")
    return [PaperTableSpec(ablation.layout.name, tuple(ablation.rows), (note,))
            for ablation in (pretraining(scale, ["fashionblip2"]), data_size(fractions, scale) if fractions else None)
            if ablation is not None and {t.key for t in ablation.trainings} <= keys]


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
    from cirbench.baselines.zoo import build_model
    from cirbench.report.findings import latest_per_category, select_rows
    from cirbench.report.grids import pick_queries, qualitative_grid

    main = next((t for t in plan.trainings if t.key == "fblip2_s2"), None)
    if main is None:
        return None
    split = load_eval_splits(data["fashioniq"], categories=["dress"])[0]
    rows = latest_per_category(select_rows(ranks, label=main.label, dataset="fashioniq", category="dress"))
    if not rows:
        return None
    model = build_model(main.model, checkpoint=finals[main.key])
    indices = pick_queries(split, rows[0], k=5, n_hits=3, n_misses=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    return qualitative_grid(model, split, FASHIONIQ_V1, indices, out_path=out_dir / "fashionblip2_dress.png", k=5)
