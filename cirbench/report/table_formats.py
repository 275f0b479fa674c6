"""One renderer per format for every table of the one table model (``report.table_model``):
rich (terminal, and plain text), Markdown, CSV, LaTeX (booktabs) and HTML.

``ci``: show each value's 95% interval (in brackets; in HTML on a second line of the cell). CSV
is machine-readable: numbers unformatted (the paper's own digits for reported cells), intervals
as ``<key>_ci_low`` / ``<key>_ci_high`` columns right after the value columns. LaTeX and HTML
draw a group header (e.g. the category) over neighbouring columns that share one.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Sequence

from cirbench.report.table_model import EMPTY, VALUE, Column, Row, Table, cell_text, csv_float

FORMATS = ("rich", "markdown", "csv", "latex")  # the files every table is written as
FILE_SUFFIXES = {"rich": ".txt", "markdown": ".md", "csv": ".csv", "latex": ".tex"}


def render(table: Table, fmt: str, *, ci: bool = False) -> str:
    """The table as text in ``fmt`` (one of FORMATS, or "html" for a fragment); rich renders to
    plain text."""
    renderers = {"rich": _rich_text, "markdown": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html}
    if fmt not in renderers:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(renderers)}")
    return renderers[fmt](table, ci=ci)


def write_table(table: Table, out_dir: str | Path, *, ci: bool = False) -> list[Path]:
    """The table in every format: ``<out_dir>/<table.name><suffix>``."""
    from cirbench.files import write_atomic

    return [write_atomic(Path(out_dir) / f"{table.name}{FILE_SUFFIXES[fmt]}", render(table, fmt, ci=ci)) for fmt in FORMATS]


def write_tables(tables: Sequence[Table], out_dir: str | Path, *, ci: bool = False) -> list[Path]:
    """Every table in every format (``write_table``)."""
    return [path for table in tables for path in write_table(table, out_dir, ci=ci)]


def _texts(table: Table, row: Row, columns: Sequence[Column], ci: bool) -> list[str]:
    return [cell_text(table, row, column, ci) for column in columns]


# ---- rich ------------------------------------------------------------------------------------


def to_rich(table: Table, *, ci: bool = False):
    """A rich Table: the notes as its caption, a rule above each new section, reported rows dim."""
    from rich.table import Table as RichTable

    columns = table.shown_columns()
    rich_table = RichTable(title=table.title, caption="\n".join(table.notes) or None, caption_justify="left")
    for column in columns:
        rich_table.add_column(column.header, justify="right" if column.numeric else "left")
    for row in table.rows:
        if row.new_section:
            rich_table.add_section()
        rich_table.add_row(*_texts(table, row, columns, ci), style="dim" if row.source == "reported" else None)
    return rich_table


def _rich_text(table: Table, *, ci: bool = False) -> str:
    from rich.console import Console

    console = Console(record=True, width=400, file=io.StringIO())
    console.print(to_rich(table, ci=ci))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def print_wide(renderable, console=None) -> None:
    """Print a table at its natural width, even past a narrow terminal: numbers never get cut."""
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console()
    needed = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
    if needed > console.width:
        console = Console(width=needed)
    console.print(renderable)


# ---- Markdown --------------------------------------------------------------------------------


def md_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_markdown(table: Table, *, ci: bool = False) -> str:
    columns = table.shown_columns()
    lines = [f"### {table.title}", "", md_line([c.header for c in columns]),
             md_line(["---:" if c.numeric else "---" for c in columns])]
    lines += [md_line(_texts(table, row, columns, ci)) for row in table.rows]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


# ---- CSV -------------------------------------------------------------------------------------


def to_csv(table: Table, *, ci: bool = False) -> str:
    """Every CSV column in order, the intervals' columns right after the value columns."""
    columns = table.csv_columns()
    keys = table.column_keys()
    last_value = max((i for i, c in enumerate(columns) if c.kind == VALUE), default=len(columns) - 1)
    interval_header = [f"{key}_{end}" for key in keys for end in ("ci_low", "ci_high")] if ci else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns[: last_value + 1]] + interval_header + [c.key for c in columns[last_value + 1:]])
    for row in table.rows:
        texts = [cell_text(table, row, column, ci, for_csv=True) for column in columns]
        cells = [row.cells.get(key, EMPTY) for key in keys]
        intervals = [csv_float(v) for c in cells for v in (c.ci_low, c.ci_high)] if ci else []
        writer.writerow(texts[: last_value + 1] + intervals + texts[last_value + 1:])
    return out.getvalue()


# ---- LaTeX -----------------------------------------------------------------------------------

LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text).replace("—", "--").replace("†", r"$^\dagger$")


def _groups(columns: Sequence[Column]) -> list[tuple[list[Column], str]]:
    """Runs of neighbouring columns: a text column alone, value columns sharing a group together."""
    runs: list[tuple[list[Column], str]] = []
    for column in columns:
        last = runs[-1] if runs else None
        if last and column.numeric and last[0][-1].numeric and last[1] == column.group:
            last[0].append(column)
        else:
            runs.append(([column], column.group))
    return runs


def _grouped(columns: Sequence[Column]) -> bool:
    return any(column.group for column in columns if column.numeric)


def to_latex(table: Table, *, ci: bool = False) -> str:
    """A booktabs tabular (a two-level header where value columns are grouped), notes below."""
    columns = table.shown_columns()
    text_columns = [c for c in columns if not c.numeric]
    value_columns = [c for c in columns if c.numeric]
    lines = [f"% {tex_escape(table.title)}",
             r"\begin{tabular}{" + "".join("r" if c.numeric else "l" for c in columns) + "}", r"\toprule"]
    if _grouped(columns):
        spans = [rf"\multicolumn{{{len(run)}}}{{c}}{{{tex_escape(group)}}}" for run, group in _groups(value_columns)]
        headers = [tex_escape(c.header[:1].upper() + c.header[1:]) for c in text_columns]
        lines.append(" & ".join(headers + [" & ".join(spans)]) + r" \\")
        lines.append(" &" * len(text_columns) + " " + " & ".join(c.sub for c in value_columns) + r" \\")
    else:
        lines.append(" & ".join(tex_escape(c.header) for c in columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(tex_escape(t) for t in _texts(table, row, columns, ci)) + r" \\" for row in table.rows]
    lines.append(r"\bottomrule")
    lines += [rf"\multicolumn{{{len(columns)}}}{{l}}{{\footnotesize {tex_escape(note)}}} \\" for note in table.notes]
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


# ---- HTML ------------------------------------------------------------------------------------


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def to_html(table: Table, *, ci: bool = False, heading: str = "h3", table_id: str = "") -> str:
    """A ``<table>`` fragment (escaped; no styles of its own): its title as a heading, a group
    header row where value columns are grouped, each interval on a second line of its cell
    (``span.ci``), reported and error rows marked by class, the notes as a list below."""
    columns = table.shown_columns()
    identity = f' id="{esc(table_id)}"' if table_id else ""
    lines = [f"<{heading}>{esc(table.title)}</{heading}>" if table.title else "", f"<table{identity}>", "<thead>"]
    lines += _html_header(columns)
    lines.append("</thead>\n<tbody>")
    lines += [_html_row(table, row, columns, ci) for row in table.rows]
    lines.append("</tbody>\n</table>")
    if table.notes:
        lines.append("<ul class=\"notes\">" + "".join(f"<li>{esc(n)}</li>" for n in table.notes) + "</ul>")
    return "\n".join(line for line in lines if line)


def _html_header(columns: Sequence[Column]) -> list[str]:
    def th(column: Column, text: str, extra: str = "") -> str:
        css = "num" if column.numeric else "label"
        return f"<th class=\"{css}\"{extra}>{esc(text)}</th>"

    if not _grouped(columns):
        return ["<tr>" + "".join(th(c, c.header) for c in columns) + "</tr>"]
    top = [f"<th class=\"group\" colspan=\"{len(run)}\">{esc(group)}</th>" if run[0].numeric
           else th(run[0], run[0].header, ' rowspan="2"') for run, group in _groups(columns)]
    subs = [th(c, c.sub or c.header) for c in columns if c.numeric]
    return ["<tr>" + "".join(top) + "</tr>", "<tr>" + "".join(subs) + "</tr>"]


def _html_row(table: Table, row: Row, columns: Sequence[Column], ci: bool) -> str:
    cells = []
    for column in columns:
        if column.numeric:
            cell = row.cells.get(column.key, EMPTY)
            text = esc(cell.text(ci=False))
            if ci and cell.value is not None and cell.ci_low is not None and cell.ci_high is not None:
                text += f"<span class=\"ci\">{esc(cell.interval_text())}</span>"
            cells.append(f"<td class=\"num\">{text}</td>")
        else:
            cells.append(f"<td class=\"label\">{esc(cell_text(table, row, column, ci))}</td>")
    return f"<tr class=\"{esc(row.source)}\">" + "".join(cells) + "</tr>"
