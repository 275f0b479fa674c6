"""The headline of a results folder as one short table: per model, on each benchmark, the mean
Recall@K over categories and the difference from the text-blind baseline.

The text-blind baseline is the zero-shot model that ranks by the reference image alone and never
reads the modification text (``TEXT_BLIND_MODELS``: ``clip_image_only``). A CIR model that does
not beat it has not learnt to follow the words; where the results hold no such row, the table
has no difference columns and says so.
"""

from __future__ import annotations

from typing import Sequence

from cirbench.report.table_model import LABEL, Cell, Column, Row, Table
from cirbench.report.tables import BenchmarkTable

TEXT_BLIND_MODELS = ("clip_image_only",)  # model names (any variant) that ignore the text
LEADING_BENCHMARKS = ("fashioniq", "enhfashioniq")  # shown first, in this order


def reading_order(tables: Sequence[BenchmarkTable]) -> list[BenchmarkTable]:
    """FashionIQ first, then enhFashionIQ, then any other benchmark (by name)."""
    def key(table: BenchmarkTable) -> tuple:
        known = table.dataset in LEADING_BENCHMARKS
        return (not known, LEADING_BENCHMARKS.index(table.dataset) if known else 0, table.dataset, table.split, table.protocol)

    return sorted(tables, key=key)


def text_blind_row(table: BenchmarkTable) -> Row | None:
    """The first measured row of a text-blind model in ``table``, if any."""
    return next((row for row in table.rows if row.source == "measured"
                 and row.model.partition(":")[0] in TEXT_BLIND_MODELS), None)


def summary_table(tables: Sequence[BenchmarkTable]) -> Table:
    """One row per measured model (in the order the tables list them), per benchmark (in
    ``reading_order``) its mean R@K and, where the benchmark has a text-blind row, the difference
    from it in points."""
    tables = reading_order(tables)
    protocols = {t.protocol for t in tables}
    columns = [Column("model", "model", LABEL)]
    baselines: dict[str, list[str]] = {}  # baseline label -> the benchmarks it is the baseline of
    missing = []
    for table in tables:
        group = f"{table.dataset} {table.split}" + (f" ({table.protocol})" if len(protocols) > 1 else "")
        columns += [Column(f"{table.name}:avg_r{k}", f"{group} R@{k}", group=group, sub=f"R@{k}") for k in table.ks]
        baseline = text_blind_row(table)
        if baseline is not None:
            columns += [Column(f"{table.name}:delta_r{k}", f"{group} Δ R@{k}", group=group, sub=f"Δ R@{k}")
                        for k in table.ks]
            baselines.setdefault(baseline.label, []).append(group)
        else:
            missing.append(group)
    notes = [f"Δ ({', '.join(groups)}) = points above the text-blind baseline, {label}: it ranks by the reference "
             "image alone and never reads the modification text" for label, groups in baselines.items()]
    if missing:
        notes.append(f"{', '.join(missing)}: no text-blind baseline ({', '.join(TEXT_BLIND_MODELS)}) was evaluated, so no Δ")
    summary = Table("Summary: mean recall over categories", "summary", tuple(columns), notes=notes)
    rows: dict[str, Row] = {}
    for table in tables:
        baseline = text_blind_row(table)
        for row in table.rows:
            if row.source == "measured":
                _fill(rows.setdefault(row.label, Row((row.label,), model=row.model)), table, row, baseline)
    summary.rows = list(rows.values())
    summary.notes.append("R@K: Recall@K in percent, the unweighted mean over the benchmark's categories; "
                         "the per-category values and 95% intervals are in the detailed tables below")
    return summary


def _fill(summary_row: Row, table: BenchmarkTable, row: Row, baseline: Row | None) -> None:
    for k in table.ks:
        value = row.cells.get(f"avg_r{k}", Cell(None)).value
        summary_row.cells[f"{table.name}:avg_r{k}"] = Cell(value)
        if baseline is not None:
            base = baseline.cells.get(f"avg_r{k}", Cell(None)).value
            delta = None if value is None or base is None else value - base
            summary_row.cells[f"{table.name}:delta_r{k}"] = Cell(delta, signed=True)
