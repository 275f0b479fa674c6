"""Tables 4 and 5 and the data-size table in the paper's layouts: the "avg" column as the paper
computes it, reported rows as printed beside measured ones, gaps with notes, four formats."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from report_fixtures import CATEGORIES, eval_result

from cirbench.errors import DataError
from cirbench.eval.protocols import FASHIONIQ_V1
from cirbench.report.paper_tables import (
    DATA_SIZE,
    TABLE4,
    TABLE5,
    Layout,
    MeasuredRow,
    ValueColumn,
    build_paper_table,
)
from cirbench.report.table_formats import render, write_table
from cirbench.report.tables import build_tables
from cirbench.results import eval_records, rank_rows

BENCHMARKS = ("fashioniq", "enhfashioniq")


def random_ranks(seed: int, categories=CATEGORIES, n: int = 120) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 90, n) for c in categories}


def measured_tables(runs: dict[tuple[str, str], dict[str, np.ndarray]]):
    """Table-3 tables from one run per (label, benchmark), the records labelled as evaluate_all does."""
    records, ranks = [], []
    for number, ((label, dataset), by_category) in enumerate(runs.items()):
        result = eval_result("fashionblip2:test_tiny", f"ckpt{number}", by_category, dataset=dataset)
        records += eval_records(result, FASHIONIQ_V1, run_id=f"run-{number}", seed=0, n_resamples=200, label=label)
        ranks += [{**row, "label": label} for row in rank_rows(result, run_id=f"run-{number}", seed=0)]
    return build_tables(records, ranks, ci=True)


def naive_avg(by_category: dict[str, np.ndarray]) -> float:
    """The paper's avg written out: (mean over categories of R@10 + the same of R@50) / 2."""
    r10 = sum(100 * np.mean(by_category[c] < 10) for c in CATEGORIES) / 3
    r50 = sum(100 * np.mean(by_category[c] < 50) for c in CATEGORIES) / 3
    return (r10 + r50) / 2


def row_of(table, settings, source="measured"):
    return next(row for row in table.rows if row.settings == settings and row.source == source)


def test_avg_is_the_papers_mean_of_r10_and_r50_over_categories_with_an_interval():
    runs = {("with", d): random_ranks(seed) for seed, d in enumerate(BENCHMARKS)}
    runs |= {("without", d): random_ranks(seed + 7) for seed, d in enumerate(BENCHMARKS)}
    measured = [MeasuredRow(("FashionBLIP-2", "yes", "yes"), {"fiq_avg": "with", "enhfiq_avg": "with"}),
                MeasuredRow(("FashionBLIP-2", "no", "yes"), {"fiq_avg": "without", "enhfiq_avg": "without"})]
    table = build_paper_table(TABLE4, measured, measured_tables(runs))
    for pretrained, label in (("yes", "with"), ("no", "without")):
        row = row_of(table, ("FashionBLIP-2", pretrained, "yes"))
        for key, dataset in (("fiq_avg", "fashioniq"), ("enhfiq_avg", "enhfashioniq")):
            cell = row.cells[key]
            assert cell.value == pytest.approx(naive_avg(runs[(label, dataset)]))
            assert cell.ci_low < cell.value < cell.ci_high


def test_data_size_columns_are_the_mean_r10_and_r50_per_benchmark():
    runs = {("half", d): random_ranks(seed) for seed, d in enumerate(BENCHMARKS)}
    table = build_paper_table(DATA_SIZE, [MeasuredRow(("50%",), {c.key: "half" for c in DATA_SIZE.columns})],
                              measured_tables(runs))
    row = row_of(table, ("50%",))
    expected = np.mean([100 * np.mean(runs[("half", "enhfashioniq")][c] < 50) for c in CATEGORIES])
    assert row.cells["enhfiq_r50"].value == pytest.approx(expected)
    assert [r.source for r in table.rows] == ["measured"]
    assert any("prints no numbers" in note for note in table.notes)


def test_reported_rows_are_the_papers_digits_marked_reported_and_beside_their_measured_row():
    runs = {("ft", d): random_ranks(seed) for seed, d in enumerate(BENCHMARKS)}
    labels = {"ft_fiq": "ft", "ft_enhfiq": "ft"}
    table = build_paper_table(TABLE5, [MeasuredRow(("CIR", "yes", "global"), labels)], measured_tables(runs))
    assert [(r.settings[0], r.settings[2], r.source) for r in table.rows] == [
        ("CIR", "global", "reported"), ("CIR", "global", "reported"), ("CIR", "global", "measured"),
        ("CIR", "multihead", "reported"), ("CIR+CTR", "multihead", "reported")]
    assert table.rows[1].settings == ("CIR", "yes", "global")
    reported = row_of(table, ("CIR+CTR", "yes", "multihead"), "reported")
    assert reported.cells["no_ft_enhfiq"].printed == "89.45" and reported.cells["ft_fiq"].value == 65.62
    markdown = render(table, "markdown", ci=True)
    assert "| CIR+CTR | yes | multihead | reported | 44.63 | 89.45 | 65.62 | 86.93 |" in markdown


def test_table4_keeps_the_reported_only_models():
    table = build_paper_table(TABLE4, [], [])
    assert [(r.settings[0], r.settings[1]) for r in table.rows if r.settings[0] == "UniFashion"] == [
        ("UniFashion", "no"), ("UniFashion", "yes")]
    assert {r.source for r in table.rows} == {"reported"} and len(table.rows) == 6
    assert row_of(table, ("FashionBLIP-2", "yes", "yes"), "reported").cells["enhfiq_avg"].printed == "87.93"


def test_missing_cells_are_gaps_with_a_note_saying_why():
    runs = {("partial", "fashioniq"): random_ranks(1, categories=("dress", "shirt")),
            ("stage1", "fashioniq"): random_ranks(2)}
    measured = [MeasuredRow(("CIR", "no", "global"), {"no_ft_fiq": "stage1", "no_ft_enhfiq": "stage1"}),
                MeasuredRow(("CIR", "yes", "global"), {"no_ft_fiq": "partial", "ft_fiq": "nowhere"})]
    table = build_paper_table(TABLE5, measured, measured_tables(runs))
    first, second = row_of(table, ("CIR", "no", "global")), row_of(table, ("CIR", "yes", "global"))
    assert set(first.cells) == {"no_ft_fiq"} and not second.cells
    notes = "\n".join(table.notes)
    assert "measured CIR / no / global: no FT: enhFIQ not measured (no results for 'stage1' on enhfashioniq); " \
           "FT: FIQ not run; FT: enhFIQ not run" in notes
    assert "no FT: FIQ not measured ('partial' lacks a category of fashioniq)" in notes
    assert "FT: FIQ not measured (no results for 'nowhere' on fashioniq)" in notes
    for fmt in ("rich", "markdown", "csv", "latex"):
        assert render(table, fmt, ci=True)  # renders, no crash
    assert "| CIR | no | global | measured | " in render(table, "markdown", ci=True)
    assert "— | — | — |" in render(table, "markdown", ci=True)
    csv_row = next(r for r in csv.DictReader(io.StringIO(render(table, "csv", ci=True)))
                   if r["source"] == "measured" and r["adapter"] == "no")
    assert csv_row["no_ft_enhfiq"] == "" and float(csv_row["no_ft_fiq"]) > 0


def test_every_format_is_written_and_latex_is_escaped(tmp_path):
    runs = {("s1", d): random_ranks(seed) for seed, d in enumerate(BENCHMARKS)}
    table = build_paper_table(TABLE4, [MeasuredRow(("SPRC", "no", "yes"), {"fiq_avg": "s1", "enhfiq_avg": "s1"})],
                              measured_tables(runs), notes=["measured: synth_tiny models, 95% CI"])
    written = write_table(table, tmp_path, ci=True)
    assert sorted(p.name for p in written) == [f"table4_pretraining.{s}" for s in ("csv", "md", "tex", "txt")]
    latex = (tmp_path / "table4_pretraining.tex").read_text()
    assert r"synth\_tiny models, 95\% CI" in latex and r"\begin{tabular}{llllrr}" in latex
    text = (tmp_path / "table4_pretraining.txt").read_text()
    assert "Table 4" in text and "reported" in text and "measured" in text
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table4_pretraining.csv").read_text())))
    sprc = [(r["pretrain_on_facap"], r["source"]) for r in rows if r["model"] == "SPRC"]
    assert sprc == [("no", "reported"), ("no", "measured"), ("yes", "reported")] and rows[0]["fiq_avg"] == "64.85"
    measured = rows[1]
    assert float(measured["fiq_avg_ci_low"]) < float(measured["fiq_avg"]) < float(measured["fiq_avg_ci_high"])


def test_a_bad_reported_file_is_one_clear_error(tmp_path):
    path = tmp_path / "reported.csv"
    layout = Layout("t", "t", (("model", "Model"),), (ValueColumn("fiq_avg", "FIQ avg", "fashioniq"),), path)
    path.write_text("model,fiq\nSPRC,64.85\n")
    with pytest.raises(DataError, match="missing columns: fiq_avg"):
        build_paper_table(layout, [], [])
    path.write_text("model,fiq_avg\nSPRC,n/a\n")
    with pytest.raises(DataError, match="line 2: fiq_avg: not a number"):
        build_paper_table(layout, [], [])
    path.write_text("model,fiq_avg\nSPRC,\n")
    table = build_paper_table(layout, [], [])
    assert table.rows[0].cells == {} and "reported SPRC: FIQ avg not printed in the paper" in table.notes
