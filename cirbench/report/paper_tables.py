"""The FACap paper's ablation tables in its own layouts, measured rows beside its reported ones:
Table 4 (FACap pre-training), Table 5 (FashionBLIP-2 components) and the data-size table (the
points of Figure 5, which prints no numbers).

A layout names its setting columns (what a row varies, e.g. adapter yes/no) and its value
columns; each value is one cell of a Table-3 table (``cirbench.report.tables``): a benchmark and
one of its average columns. So measured values come from the records exactly as Table 3 reads
them (latest run per label and category), with its averages and bootstrap intervals: "avg" is the
paper's, the mean of (mean R@10, mean R@50) over dress, shirt and toptee. Reported rows are the
paper's printed numbers from ``results/reported/``, with their own digits, marked "reported" and
placed next to the measured row of the same setting. A cell without a value is a gap (—) with a
note saying why.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cirbench.data.schema import DataError
from cirbench.report.tables import (
    FILE_SUFFIXES,
    FORMATS,
    REPORTED_TABLE3,
    Cell,
    Table,
    csv_float,
    csv_number,
    md_line,
    tex_escape,
)

REPORTED_DIR = REPORTED_TABLE3.parent
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


@dataclass
class PaperRow:
    settings: tuple[str, ...]
    source: str  # "measured" or "reported"
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class PaperTable:
    layout: Layout
    rows: list[PaperRow]
    notes: list[str]


TABLE4 = Layout(
    "table4_pretraining",
    "Table 4 — effect of FACap pre-training (average recall)",
    (("model", "Model"), ("pretrain_on_facap", "Pre-train on FACap"), ("finetune_on_fiq", "Fine-tune on FIQ")),
    (ValueColumn("fiq_avg", "FIQ avg", "fashioniq"), ValueColumn("enhfiq_avg", "enhFIQ avg", "enhfashioniq")),
    REPORTED_DIR / "facap_table4_pretraining.csv",
    (AVG_NOTE,),
)

TABLE5 = Layout(
    "table5_components",
    "Table 5 — FashionBLIP-2 components (average recall)",
    (("training_tasks", "Training tasks"), ("adapter", "Adapter"), ("matching", "Matching")),
    (ValueColumn("no_ft_fiq", "no FT: FIQ", "fashioniq"), ValueColumn("no_ft_enhfiq", "no FT: enhFIQ", "enhfashioniq"),
     ValueColumn("ft_fiq", "FT: FIQ", "fashioniq"), ValueColumn("ft_enhfiq", "FT: enhFIQ", "enhfashioniq")),
    REPORTED_DIR / "facap_table5_components.csv",
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


def build_paper_table(
    layout: Layout, measured: Sequence[MeasuredRow], tables: Sequence[Table], *, notes: Sequence[str] = ()
) -> PaperTable:
    """``layout`` filled from the Table-3 ``tables`` of a run, with the paper's rows beside."""
    by_dataset = {t.dataset: t for t in tables if (t.protocol, t.split) == MEASURED_GROUP}
    table = PaperTable(layout, [], [*layout.notes, *notes])
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
    return table


def _measured_row(layout: Layout, spec: MeasuredRow, by_dataset: dict[str, Table]) -> tuple[PaperRow, list[str]]:
    row, gaps = PaperRow(spec.settings, "measured"), []
    for column in layout.columns:
        cell, why = _measured_cell(column, spec.labels.get(column.key), by_dataset)
        if cell is None:
            gaps.append(f"{column.header} {why}")
        else:
            row.cells[column.key] = cell
    return row, gaps


def _measured_cell(column: ValueColumn, label: str | None, by_dataset: dict[str, Table]) -> tuple[Cell | None, str]:
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


def _gap_notes(layout: Layout, rows: Sequence[PaperRow], why: str) -> list[str]:
    notes = []
    for row in rows:
        gaps = [c.header for c in layout.columns if c.key not in row.cells]
        if gaps:
            notes.append(f"{row.source} {' / '.join(row.settings)}: {', '.join(gaps)} {why}")
    return notes


def _side_by_side(reported: list[PaperRow], measured: list[PaperRow]) -> list[PaperRow]:
    """Rows grouped by setting (the paper's order first), the reported row before the measured one."""
    groups: dict[tuple[str, ...], list[PaperRow]] = {}
    for row in [*reported, *measured]:
        groups.setdefault(row.settings, []).append(row)
    return [row for rows in groups.values() for row in rows]


def reported_rows(layout: Layout) -> list[PaperRow]:
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


def _reported_row(layout: Layout, values: dict[str, str], path: Path, number: int) -> PaperRow:
    row = PaperRow(tuple((values[key] or "").strip() for key, _ in layout.settings), "reported")
    for column in layout.columns:
        text = (values[column.key] or "").strip()
        if not text:
            continue
        try:
            row.cells[column.key] = Cell(float(text), printed=text)
        except ValueError:
            raise DataError(path, f"line {number}", f"{column.key}: not a number: {text!r}") from None
    return row


# ---- rendering -------------------------------------------------------------------------------


def render_paper_table(table: PaperTable, fmt: str, *, ci: bool = True) -> str:
    """The table as text in ``fmt`` (one of tables.FORMATS); rich renders to plain text."""
    renderers = {"rich": _rich_text, "markdown": to_markdown, "csv": to_csv, "latex": to_latex}
    if fmt not in renderers:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderers[fmt](table, ci=ci)


def write_paper_table(table: PaperTable, out_dir: Path, *, ci: bool = True) -> list[Path]:
    """The table in every format: ``<out_dir>/<layout name><suffix>``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in FORMATS:
        path = out_dir / f"{table.layout.name}{FILE_SUFFIXES[fmt]}"
        path.write_text(render_paper_table(table, fmt, ci=ci), encoding="utf-8")
        written.append(path)
    return written


def _headers(table: PaperTable) -> list[str]:
    return [header for _, header in table.layout.settings] + ["source"] + [c.header for c in table.layout.columns]


def _texts(table: PaperTable, row: PaperRow, ci: bool) -> list[str]:
    values = [row.cells.get(column.key, Cell(None)).text(ci) for column in table.layout.columns]
    return [*row.settings, row.source, *values]


def to_rich(table: PaperTable, *, ci: bool = True):
    from rich.table import Table as RichTable

    layout = table.layout
    rich_table = RichTable(title=layout.title, caption="\n".join(table.notes) or None, caption_justify="left")
    for header in _headers(table)[: len(layout.settings) + 1]:
        rich_table.add_column(header)
    for column in layout.columns:
        rich_table.add_column(column.header, justify="right")
    for number, row in enumerate(table.rows):
        if layout.reported and number and row.settings != table.rows[number - 1].settings:
            rich_table.add_section()  # a rule under each reported-and-measured pair
        rich_table.add_row(*_texts(table, row, ci), style="dim" if row.source == "reported" else None)
    return rich_table


def _rich_text(table: PaperTable, *, ci: bool = True) -> str:
    from rich.console import Console

    console = Console(record=True, width=400, file=io.StringIO())
    console.print(to_rich(table, ci=ci))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def to_markdown(table: PaperTable, *, ci: bool = True) -> str:
    n_text = len(table.layout.settings) + 1
    lines = [f"### {table.layout.title}", "", md_line(_headers(table)),
             md_line(["---"] * n_text + ["---:"] * len(table.layout.columns))]
    lines += [md_line(_texts(table, row, ci)) for row in table.rows]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(table: PaperTable, *, ci: bool = True) -> str:
    """Machine-readable: the reported CSV's column names, numbers unformatted, intervals as columns."""
    keys = [column.key for column in table.layout.columns]
    header = [key for key, _ in table.layout.settings] + ["source", *keys]
    header += [f"{key}_{end}" for key in keys for end in ("ci_low", "ci_high")] if ci else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        cells = [row.cells.get(key, Cell(None)) for key in keys]
        line = [*row.settings, row.source, *(csv_number(c) for c in cells)]
        line += [csv_float(v) for c in cells for v in (c.ci_low, c.ci_high)] if ci else []
        writer.writerow(line)
    return out.getvalue()


def to_latex(table: PaperTable, *, ci: bool = True) -> str:
    """A booktabs tabular, notes below."""
    n_text, n_values = len(table.layout.settings) + 1, len(table.layout.columns)
    lines = [
        f"% {tex_escape(table.layout.title)}",
        r"\begin{tabular}{" + "l" * n_text + "r" * n_values + "}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in _headers(table)) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex_escape(t) for t in _texts(table, row, ci)) + r" \\" for row in table.rows]
    lines.append(r"\bottomrule")
    lines += [rf"\multicolumn{{{n_text + n_values}}}{{l}}{{\footnotesize {tex_escape(note)}}} \\" for note in table.notes]
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"
