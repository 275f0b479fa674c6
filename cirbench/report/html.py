"""One self-contained HTML page for a results folder: tables, findings, plots, grids, provenance.

The page needs nothing else to open: CSS is inline, images are base64 data URIs, there are no
scripts, links or network references. Every text taken from files is HTML-escaped.

What it gathers from ``results_dir``:

- the Table-3 style tables built from every ``results.jsonl`` under the folder (with bootstrap
  intervals, the averages' from ``ranks.jsonl``), via ``cirbench.report.tables``;
- other tables in ``tables/``: Markdown (``.md``) or else CSV (``.csv``) per file stem, except the
  stems of the tables already built from the records (the ``.txt`` and ``.tex`` renderings of the
  same tables are left out);
- ``findings.txt`` (the paired-test findings as ``findings.format_findings`` prints them);
- ``plots/**/*.png`` and ``grids/**/*.png``, then ``extra_images``;
- provenance: git commits, package versions, protocols, runs, devices and seeds of the records,
  and the command that made the folder (``command.txt``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import re
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from cirbench.data.schema import DataError
from cirbench.results import read_results_folder

if TYPE_CHECKING:
    from cirbench.report.tables import Row, Table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROVENANCE_FILES = ("command.txt",)
FINDINGS_GLOB = "findings*.txt"  # the demo's findings.txt, the ablations' findings_<table>.txt
IMAGE_FOLDERS = (("plots", "Plots"), ("grids", "Qualitative grids"))
PROVENANCE_FIELDS = ("git_commit", "package_version", "protocol", "run_id", "device", "seed")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #c8c8c8; padding: .3em .6em; text-align: right; white-space: nowrap; }
th { background: #dbe7f3; } td.label, th.label { text-align: left; }
tr.reported td { background: #f4f4f4; font-style: italic; }
ul.notes { font-size: .85em; color: #555; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { font-weight: 600; } dd { margin: 0; font-family: monospace; }
"""


def write_html_report(
    results_dir: str | Path,
    out_path: str | Path,
    *,
    title: str,
    extra_images: Iterable[str | Path] = (),
    reported: bool = False,
) -> Path:
    """Write the report of ``results_dir`` to ``out_path``; ``reported`` adds the paper's rows."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(results_dir, "report", "no such results folder")
    records, ranks, errors = read_results_folder(results_dir)
    tables = _build_tables(records, ranks, errors, reported)
    sections = [
        _tables_section(tables),
        _other_tables_section(results_dir / "tables", {t.slug for t in tables}),
        _findings_section(sorted(results_dir.glob(FINDINGS_GLOB))),
        *(_images_section(heading, _pngs_under(results_dir / folder), results_dir) for folder, heading in IMAGE_FOLDERS),
        _images_section("Other images", [Path(p) for p in extra_images], results_dir),
        _provenance_section(records, results_dir),
    ]
    page = _page(title, [s for s in sections if s])
    return _write_atomically(Path(out_path), page)


def _build_tables(records: list[dict], ranks: list[dict], errors: list[dict], reported: bool) -> list["Table"]:
    from cirbench.report.tables import build_tables

    if not records and not reported:
        return []
    return build_tables(records, ranks, reported=reported, ci=True, errors=errors)


def _page(title: str, sections: list[str]) -> str:
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _write_atomically(path: Path, text: str) -> Path:
    """Temporary file + rename: an earlier report is replaced only by a complete one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


# ---- tables ----------------------------------------------------------------------------------


def _tables_section(tables: Sequence["Table"]) -> str:
    if not tables:
        return ""
    parts = ["<h2>Results</h2>", "<p>Recall@K in percent; brackets: 95% bootstrap interval over queries.</p>"]
    parts += [_table_html(table) for table in tables]
    return "\n".join(parts)


def _table_html(table: "Table") -> str:
    keys = table.column_keys()
    header = "".join(f"<th>{_esc(table.column_header(k))}</th>" for k in keys)
    lines = [
        f"<h3>{_esc(table.title)}</h3>",
        "<table>",
        f"<tr><th class=\"label\">model</th><th class=\"label\">source</th>{header}</tr>",
    ]
    lines += [_row_html(table, row, keys) for row in table.rows]
    lines.append("</table>")
    if table.notes:
        lines.append("<ul class=\"notes\">" + "".join(f"<li>{_esc(n)}</li>" for n in table.notes) + "</ul>")
    return "\n".join(lines)


def _row_html(table: "Table", row: "Row", keys: list[str]) -> str:
    from cirbench.report.tables import Cell

    cells = "".join(f"<td>{_esc(row.cells.get(k, Cell(None)).text(ci=True))}</td>" for k in keys)
    css = " class=\"reported\"" if row.source == "reported" else ""
    return f"<tr{css}><td class=\"label\">{_esc(row.label)}</td><td class=\"label\">{_esc(row.origin)}</td>{cells}</tr>"


def _other_tables_section(folder: Path, shown_slugs: set[str]) -> str:
    """Markdown (else CSV) tables in ``folder`` not already shown from the records."""
    if not folder.is_dir():
        return ""
    by_name: dict[Path, Path] = {}  # file path without suffix -> the file shown for it
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".md", ".csv") and path.stem not in shown_slugs:
            chosen = by_name.get(path.with_suffix(""))
            if chosen is None or (chosen.suffix == ".csv" and path.suffix == ".md"):
                by_name[path.with_suffix("")] = path
    if not by_name:
        return ""
    parts = ["<h2>Other tables</h2>"]
    for path in by_name.values():
        text = path.read_text(encoding="utf-8")
        converted = _markdown_html(text) if path.suffix == ".md" else _csv_html(text)
        parts.append(f"<h3>{_esc(path.relative_to(folder))}</h3>\n{converted}")
    return "\n".join(parts)


def _csv_html(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return ""
    lines = ["<table>", "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in rows[0]) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows[1:]]
    return "\n".join(lines + ["</table>"])


_PIPE = re.compile(r"(?<!\\)\|")
_ALIGNMENT_CELL = re.compile(r":?-{3,}:?")


def _markdown_html(text: str) -> str:
    """The Markdown the table writers produce: headings, pipe tables, bullets, plain lines."""
    blocks = []
    for kind, group in groupby((line.strip() for line in text.splitlines()), key=_line_kind):
        lines = list(group)
        if kind == "table":
            blocks.append(_pipe_table_html(lines))
        elif kind == "bullet":
            blocks.append("<ul class=\"notes\">" + "".join(f"<li>{_esc(line[2:])}</li>" for line in lines) + "</ul>")
        elif kind == "heading":
            blocks.extend(f"<h4>{_esc(line.lstrip('#').strip())}</h4>" for line in lines)
        elif kind == "text":
            blocks.extend(f"<p>{_esc(line)}</p>" for line in lines)
    return "\n".join(blocks)


def _line_kind(line: str) -> str:
    if not line:
        return "blank"
    if line.startswith("|"):
        return "table"
    if line.startswith("- "):
        return "bullet"
    return "heading" if line.startswith("#") else "text"


def _pipe_table_html(lines: list[str]) -> str:
    rows = [[c.strip().replace("\\|", "|") for c in _PIPE.split(line.strip("|"))] for line in lines]
    rows = [row for row in rows if not all(_ALIGNMENT_CELL.fullmatch(c) for c in row)]
    if not rows:
        return ""
    head = "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in rows[0]) + "</tr>"
    body = ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows[1:]]
    return "\n".join(["<table>", head, *body, "</table>"])


# ---- findings, images, provenance ------------------------------------------------------------


def _pngs_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


def _findings_section(paths: Sequence[Path]) -> str:
    if not paths:
        return ""
    text = "\n".join(path.read_text(encoding="utf-8") for path in paths)
    return f"<h2>Findings (paired tests)</h2>\n<pre>{_esc(text)}</pre>"


def _images_section(heading: str, paths: Sequence[Path], results_dir: Path) -> str:
    if not paths:
        return ""
    figures = [_figure(path, results_dir) for path in paths]
    return f"<h2>{_esc(heading)}</h2>\n" + "\n".join(figures)


def _figure(path: Path, results_dir: Path) -> str:
    if not path.is_file():
        raise DataError(path, "image", "no such file")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise DataError(path, "image", "not a PNG file (the report inlines PNG images only)")
    name = path.relative_to(results_dir) if path.is_relative_to(results_dir) else path.name
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f"<figure><img src=\"data:image/png;base64,{encoded}\" alt=\"{_esc(name)}\">"
        f"<figcaption>{_esc(name)}</figcaption></figure>"
    )


def _provenance_section(records: list[dict], results_dir: Path) -> str:
    entries = [(field, _distinct(records, field)) for field in PROVENANCE_FIELDS]
    created = sorted(r["created"] for r in records if r.get("created"))
    if created:
        entries.append(("created", f"{created[0]} … {created[-1]}" if created[0] != created[-1] else created[0]))
    rows = "".join(f"<dt>{_esc(name)}</dt><dd>{_esc(value)}</dd>" for name, value in entries if value)
    parts = ["<h2>Provenance</h2>", f"<dl>{rows}</dl>" if rows else "<p>No result records in this folder.</p>"]
    for name in PROVENANCE_FILES:
        path = results_dir / name
        if path.is_file():
            parts.append(f"<h3>{_esc(name)}</h3>\n<pre>{_esc(path.read_text(encoding='utf-8'))}</pre>")
    return "\n".join(parts)


def _distinct(records: list[dict], field: str) -> str:
    values = sorted({str(r[field]) for r in records if r.get(field) is not None})
    return ", ".join(values)
