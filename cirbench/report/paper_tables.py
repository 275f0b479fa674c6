"""The FACap paper's ablation tables in its own layouts, measured rows beside its reported ones:
Table 4 (FACap pre-training), Table 5 (FashionBLIP-2 components) and the data-size table (the
points of Figure 5, which prints no numbers).

Each is built as the one table model (``report.table_model``) and rendered by its renderers. A
layout names its setting columns (what a row varies, e.g. adapter yes/no) and its value columns;
each value is one cell of a Table-3 table (``cirbench.report.tables``): a benchmark and one of its
average columns. So measured values come from the records exactly as Table 3 reads
them (latest run per label and category), with its averages and bootstrap intervals: "avg" is the
paper's, the mean of (mean R@10, mean R@50) over dress, shirt and toptee. Reported rows are the
paper's printed numbers from ``results/reported/``, with their own digits, marked "reported" and
placed next to the measured row of the same setting. A cell without a value is a gap (—) with a
note saying why.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cirbench.errors import DataError
from cirbench.report.table_model import LABEL, SOURCE, Cell, Column, Row, Table
from cirbench.report.tables import BenchmarkTable, reported_file

MEASURED_GROUP = ("fashioniq/v1", "val")  # protocol and split the paper's tables are on
AVG_NOTE = ("avg = the paper's: mean of (mean R@10, mean R@50) over dress, shirt and toptee, val split; "
            "measured cells give a 95% bootstrap interval over queries in brackets")


@dataclass(frozen=True)
class ValueColumn:
    key: str  # the reported CSV's column, e.g. "fiq_avg"
    header: str
    dataset: str  # the benchmark whose Table-3 table the value is read from
    metric: str = "avg"  # that table's column key: "avg", "avg_r10" or "avg_r50"


@dataclass(frozen=True)
class Layout:
    name: str  # file stem
    title: str
    settings: tuple[tuple[str, str], ...]  # (reported CSV column, header) of what a row varies
    columns: tuple[ValueColumn, ...]
    reported: Path | None = None  # the paper's printed rows; None: the paper prints no numbers
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeasuredRow:
    """One measured setting: which result label (row of the Table-3 tables) fills which column."""

    settings: tuple[str, ...]
    labels: Mapping[str, str]  # value column key -> result label; a column without one was not run


TABLE4 = Layout(
    "table4_pretraining",
    "Table 4 — effect of FACap pre-training (average recall)",
    (("model", "Model"), ("pretrain_on_facap", "Pre-train on FACap"), ("finetune_on_fiq", "Fine-tune on FIQ")),
    (ValueColumn("fiq_avg", "FIQ avg", "fashioniq"), ValueColumn("enhfiq_avg", "enhFIQ avg", "enhfashioniq")),
    reported_file("facap_table4_pretraining.csv"),
    (AVG_NOTE,),
)

TABLE5 = Layout(
    "table5_components",
    "Table 5 — FashionBLIP-2 components (average recall)",
    (("training_tasks", "Training tasks"), ("adapter", "Adapter"), ("matching", "Matching")),
    (ValueColumn("no_ft_fiq", "no FT: FIQ", "fashioniq"), ValueColumn("no_ft_enhfiq", "no FT: enhFIQ", "enhfashioniq"),
     ValueColumn("ft_fiq", "FT: FIQ", "fashioniq"), ValueColumn("ft_enhfiq", "FT: enhFIQ", "enhfashioniq")),
    reported_file("facap_table5_components.csv"),
    (AVG_NOTE, "no FT: stage 1 on FACap only; FT: then stage 2 on FashionIQ"),
)

DATA_SIZE = Layout(
    "data_size",
    "FACap data size (Figure 5) — FashionBLIP-2 stage 1 on a nested fraction of FACap",
    (("fraction", "FACap used"),),
    tuple(ValueColumn(f"{short}_r{k}", f"{name} R@{k}", dataset, f"avg_r{k}")
          for short, name, dataset in (("fiq", "FIQ", "fashioniq"), ("enhfiq", "enhFIQ", "enhfashioniq"))
          for k in (10, 50)),
    None,
    (("the paper's Figure 5 prints no numbers (its curve: recall grows with the fraction, a small gain from 50% "
      "to 100%), so there are no reported rows"),
     "R@K = mean over dress, shirt and toptee, val split, with a 95% bootstrap interval over queries in brackets"),
)


# ---- building --------------------------------------------------------------------------------


LAYOUTS = {layout.name: layout for layout in (TABLE4, TABLE5, DATA_SIZE)}


def paper_table(layout: Layout) -> Table:
    """An empty table of ``layout``: its settings, the source, its value columns."""
    columns = [Column(key, header, LABEL, index=i) for i, (key, header) in enumerate(layout.settings)]
    columns.append(Column("source", "source", SOURCE))
    columns += [Column(column.key, column.header) for column in layout.columns]
    return Table(layout.title, layout.name, tuple(columns), notes=list(layout.notes))


def build_paper_table(
    layout: Layout, measured: Sequence[MeasuredRow], tables: Sequence[BenchmarkTable], *, notes: Sequence[str] = ()
) -> Table:
    """``layout`` filled from the Table-3 ``tables`` of a run, with the paper's rows beside."""
    by_dataset = {t.dataset: t for t in tables if (t.protocol, t.split) == MEASURED_GROUP}
    table = paper_table(layout)
    table.notes.extend(notes)
    reported = reported_rows(layout) if layout.reported else []
    table.notes.extend(_gap_notes(layout, reported, "not printed in the paper"))
    rows = []
    for spec in measured:
        if len(spec.settings) != len(layout.settings):
            raise ValueError(f"{layout.name}: row {spec.settings} needs {len(layout.settings)} settings")
        row, gaps = _measured_row(layout, spec, by_dataset)
        rows.append(row)
        if gaps:
            table.notes.append(f"measured {' / '.join(spec.settings)}: " + "; ".join(gaps))
    table.rows = _side_by_side(reported, rows)
    for previous, row in zip(table.rows, table.rows[1:]):
        row.new_section = layout.reported is not None and row.settings != previous.settings  # a rule under each pair
    return table


def _measured_row(layout: Layout, spec: MeasuredRow, by_dataset: dict[str, BenchmarkTable]) -> tuple[Row, list[str]]:
    row, gaps = Row(tuple(spec.settings), "measured"), []
    for column in layout.columns:
        cell, why = _measured_cell(column, spec.labels.get(column.key), by_dataset)
        if cell is None:
            gaps.append(f"{column.header} {why}")
        else:
            row.cells[column.key] = cell
    return row, gaps


def _measured_cell(column: ValueColumn, label: str | None, by_dataset: dict[str, BenchmarkTable]) -> tuple[Cell | None, str]:
    """The Table-3 cell of ``label`` in ``column``, or None and why there is none."""
    if label is None:
        return None, "not run"
    table = by_dataset.get(column.dataset)
    rows = [r for r in table.rows if r.source == "measured" and r.label == label] if table else []
    if not rows:
        return None, f"not measured (no results for {label!r} on {column.dataset})"
    cell = rows[0].cells.get(column.metric)
    if cell is None or cell.value is None:
        return None, f"not measured ({label!r} lacks a category of {column.dataset})"
    return Cell(cell.value, cell.ci_low, cell.ci_high), ""


def _gap_notes(layout: Layout, rows: Sequence[Row], why: str) -> list[str]:
    notes = []
    for row in rows:
        gaps = [c.header for c in layout.columns if c.key not in row.cells]
        if gaps:
            notes.append(f"{row.source} {' / '.join(row.settings)}: {', '.join(gaps)} {why}")
    return notes


def _side_by_side(reported: list[Row], measured: list[Row]) -> list[Row]:
    """Rows grouped by setting (the paper's order first), the reported row before the measured one."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in [*reported, *measured]:
        groups.setdefault(row.settings, []).append(row)
    return [row for rows in groups.values() for row in rows]


def reported_rows(layout: Layout) -> list[Row]:
    """The paper's rows of ``layout`` as printed."""
    path = layout.reported
    if path is None or not path.is_file():
        raise DataError(path or layout.name, "reported", "file not found (the paper's printed numbers)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        printed = list(reader)
        header = reader.fieldnames or []
    wanted = [key for key, _ in layout.settings] + [column.key for column in layout.columns]
    missing = [key for key in wanted if key not in header]
    if missing:
        raise DataError(path, "header", f"missing columns: {', '.join(missing)}")
    return [_reported_row(layout, values, path, number) for number, values in enumerate(printed, start=2)]


def _reported_row(layout: Layout, values: dict[str, str], path: Path, number: int) -> Row:
    row = Row(tuple((values[key] or "").strip() for key, _ in layout.settings), "reported")
    for column in layout.columns:
        text = (values[column.key] or "").strip()
        if not text:
            continue
        try:
            row.cells[column.key] = Cell(float(text), printed=text)
        except ValueError:
            raise DataError(path, f"line {number}", f"{column.key}: not a number: {text!r}") from None
    return row
