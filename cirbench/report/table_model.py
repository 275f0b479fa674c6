"""The one table model of cirbench's results: a title, columns, rows of cells, notes.

Every table is built as this model: Table 3 per (protocol, dataset, split) (``report.tables``),
Tables 4 and 5 and the data-size table (``report.paper_tables``), and the HTML report's summary
and findings tables (``report.summary``). One renderer per format turns any of them into text
(``report.table_formats``: rich, Markdown, CSV, LaTeX, HTML).

A cell knows its value, its interval, the digits a paper printed, whether it is a printed average
that its own per-category values do not give (``flagged``, marked †), and whether it is a
difference (``signed``). A column says where its text comes from (``kind``), its header and,
optionally, a group header spanning neighbouring columns (e.g. the category over R@10 and R@50),
and whether it is shown (rich, Markdown, LaTeX, HTML) and written to CSV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Column kinds: where a column's text comes from.
VALUE = "value"  # a number: Row.cells[key]
LABEL = "label"  # Row.labels[index] (Table 3: the model; paper tables: the settings a row varies)
SOURCE = "source"  # shown: Row.origin ("reported (zero_shot)"); in CSV: Row.source
SETTING = "setting"  # Row.setting (a reported row's paper setting, an error row's message)
CONTEXT = "context"  # Table.context[key]: the same for every row (protocol, dataset, split)
COUNT = "count"  # Row.counts[group][index]: queries used (0) / annotated (1) in category ``group``
FLAGS = "flags"  # the keys of the row's flagged cells


@dataclass
class Cell:
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    printed: str | None = None  # reported numbers keep the paper's own digits
    flagged: bool = False  # a printed average its own per-category values do not give
    signed: bool = False  # a difference: always shown with its sign

    def text(self, ci: bool) -> str:
        """The value as shown ("—" when there is none), its interval in brackets with ``ci``."""
        if self.value is None:
            return "—"
        number = f"{self.value:+.2f}" if self.signed else f"{self.value:.2f}"
        text = self.printed if self.printed is not None else number
        if ci and self.ci_low is not None and self.ci_high is not None:
            text += " " + self.interval_text()
        return text + ("†" if self.flagged else "")

    def interval_text(self) -> str:
        spec = "+.1f" if self.signed else ".1f"
        return f"[{self.ci_low:{spec}}, {self.ci_high:{spec}}]"

    def csv_text(self) -> str:
        """Machine-readable: the printed digits, else the value to 4 decimals, else empty."""
        return self.printed if self.printed is not None else csv_float(self.value)


EMPTY = Cell(None)


def csv_float(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class Column:
    key: str  # the cells' key and the CSV column name
    header: str  # shown (rich, Markdown, LaTeX, HTML)
    kind: str = VALUE
    index: int = 0  # LABEL: position in Row.labels; COUNT: 0 = used, 1 = annotated
    group: str = ""  # a header spanning neighbouring columns of the same group (COUNT: the category)
    sub: str = ""  # the header under the group
    shown: bool = True
    in_csv: bool = True

    @property
    def numeric(self) -> bool:
        return self.kind == VALUE


@dataclass
class Row:
    labels: tuple[str, ...]  # what identifies the row: the model, or the settings it varies
    source: str = "measured"  # "measured", "reported" or "error"
    setting: str = ""  # reported rows: the paper's setting; error rows: the error
    cells: dict[str, Cell] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # category -> (used, total)
    model: str = ""  # measured rows: the model spec ("name:variant")
    new_section: bool = False  # a rule above this row (rich)

    @property
    def label(self) -> str:
        return " / ".join(self.labels)

    @property
    def settings(self) -> tuple[str, ...]:
        return self.labels

    @property
    def origin(self) -> str:
        return f"{self.source} ({self.setting})" if self.setting else self.source


@dataclass
class Table:
    title: str
    name: str  # file stem of the written renderings
    columns: tuple[Column, ...]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)  # CONTEXT columns' values

    def column_keys(self) -> list[str]:
        """The keys of the value columns, in order."""
        return [column.key for column in self.columns if column.kind == VALUE]

    def column_header(self, key: str) -> str:
        return next(column.header for column in self.columns if column.key == key)

    def shown_columns(self) -> list[Column]:
        return [column for column in self.columns if column.shown]

    def csv_columns(self) -> list[Column]:
        return [column for column in self.columns if column.in_csv]


def cell_text(table: Table, row: Row, column: Column, ci: bool, *, for_csv: bool = False) -> str:
    """The text of ``row`` in ``column``: as shown, or as written to CSV."""
    kind = column.kind
    if kind == VALUE:
        cell = row.cells.get(column.key, EMPTY)
        return cell.csv_text() if for_csv else cell.text(ci)
    if kind == LABEL:
        return row.labels[column.index] if column.index < len(row.labels) else ""
    if kind == SOURCE:
        return row.source if for_csv else row.origin
    if kind == SETTING:
        return row.setting
    if kind == CONTEXT:
        return table.context.get(column.key, "")
    if kind == COUNT:
        counts = row.counts.get(column.group)
        return "" if counts is None else str(counts[column.index])
    if kind == FLAGS:
        return " ".join(key for key in table.column_keys() if row.cells.get(key, EMPTY).flagged)
    raise ValueError(f"unknown column kind {kind!r}")
