"""One self-contained HTML page for a results folder, laid out to read at laptop width (1,400 px):

1. a short summary table (per model and benchmark: mean R@10 and R@50 over categories, and the
   difference from the text-blind baseline), ``report.summary``;
2. the plots (``plots/**/*.png``);
3. the paper's questions answered with paired tests, as a table with verdicts
   (``report.findings.findings_table``);
4. the paper's ablation tables (Tables 4 and 5, the data-size table) recorded in the folder's
   report plan (``report.report_plan``);
5. the per-category detail: the Table-3 style tables with their 95% intervals (``report.tables``);
6. qualitative grids (``grids/**/*.png``), then ``extra_images``;
7. provenance: git commits, package versions, protocols, runs, devices and seeds of the records,
   and the command that made the folder (``command.txt``).

Every table is built as the one table model from the records, the ranks and the report plan, and
rendered by ``report.table_formats.to_html``: nothing is parsed back from Markdown or CSV. The page
needs nothing else to open: CSS is inline, images are base64 data URIs, there are no scripts,
links or network references. Every text taken from files is HTML-escaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from cirbench.errors import DataError
from cirbench.files import data_url, write_atomic
from cirbench.report.table_formats import esc, to_html
from cirbench.results import read_results_folder

if TYPE_CHECKING:
    from cirbench.report.table_model import Table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROVENANCE_FILES = ("command.txt",)
PROVENANCE_FIELDS = ("git_commit", "package_version", "protocol", "run_id", "device", "seed")

# Laptop width: numbers never wrap, labels do; intervals sit under their value; a table wider
# than the window scrolls inside its box instead of pushing the page sideways.
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em 2em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
h3 { font-size: 1.05em; margin: 1.2em 0 .3em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .6em 0; font-size: .85em; }
th, td { border: 1px solid #c8c8c8; padding: .25em .5em; vertical-align: top; }
th { background: #dbe7f3; font-weight: 600; } th.group { text-align: center; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.label, th.label { text-align: left; max-width: 24em; overflow-wrap: anywhere; }
span.ci { display: block; font-size: .8em; color: #666; }
tr.reported td { background: #f4f4f4; font-style: italic; } tr.error td { color: #a00; }
tr.not-measured td { color: #777; }
table#summary { font-size: .95em; } table#summary td.num { font-weight: 600; }
ul.notes { font-size: .85em; color: #555; max-width: 70em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; white-space: pre-wrap; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { font-weight: 600; } dd { margin: 0; font-family: monospace; overflow-wrap: anywhere; }
"""


def write_html_report(
    results_dir: str | Path,
    out_path: str | Path,
    *,
    title: str,
    extra_images: Iterable[str | Path] = (),
    reported: bool = False,
) -> Path:
    """Write the report of ``results_dir`` to ``out_path`` (atomically); ``reported`` adds the
    paper's Table-3 rows to the detailed tables."""
    from cirbench.report.findings import findings_table
    from cirbench.report.report_plan import build_findings, build_paper_tables, read_plan
    from cirbench.report.summary import reading_order, summary_table
    from cirbench.report.tables import build_tables

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(results_dir, "report", "no such results folder")
    records, ranks, errors = read_results_folder(results_dir)
    tables = reading_order(build_tables(records, ranks, reported=reported, ci=True, errors=errors) if records or reported else [])
    paper_specs, findings_specs = read_plan(results_dir)
    extra_images = [Path(p) for p in extra_images]
    plots, grids = _pngs_under(results_dir / "plots"), _pngs_under(results_dir / "grids")
    if not (records or errors or reported or extra_images or plots or grids):
        raise DataError(results_dir, "report", "nothing to report: no results.jsonl records, error rows or images")
    measured = [t for t in tables if any(row.source == "measured" for row in t.rows)]
    findings = [findings_table(build_findings(spec, ranks), spec.asked) for spec in findings_specs]
    sections = [
        _section("Summary", [to_html(summary_table(measured), table_id="summary")] if measured else []),
        _images_section("Plots", plots, results_dir),
        _section("Findings (paired tests on the same queries)", [_wide(t, ci=True) for t in findings if t.rows]),
        _section("The paper's ablation tables", [_wide(t, ci=True) for t in build_paper_tables(paper_specs, tables)]),
        _section("Per-category results", [_intervals_note()] + [_wide(t, ci=True) for t in tables] if tables else []),
        _images_section("Qualitative grids", grids, results_dir),
        _images_section("Other images", extra_images, results_dir),
        _provenance_section(records, results_dir),
    ]
    return write_atomic(Path(out_path), _page(title, [s for s in sections if s]))


def _page(title: str, sections: list[str]) -> str:
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _section(heading: str, parts: Sequence[str]) -> str:
    return f"<h2>{esc(heading)}</h2>\n" + "\n".join(parts) if parts else ""


def _wide(table: "Table", *, ci: bool = False) -> str:
    """A table in a box that scrolls sideways by itself should it ever be wider than the window."""
    return f"<div class=\"scroll\">\n{to_html(table, ci=ci)}\n</div>"


def _intervals_note() -> str:
    return "<p>Recall@K in percent; under each value its 95% bootstrap interval over queries.</p>"


# ---- findings, images, provenance ------------------------------------------------------------


def _pngs_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


def _images_section(heading: str, paths: Sequence[Path], results_dir: Path) -> str:
    if not paths:
        return ""
    figures = [_figure(path, results_dir) for path in paths]
    return f"<h2>{esc(heading)}</h2>\n" + "\n".join(figures)


def _figure(path: Path, results_dir: Path) -> str:
    if not path.is_file():
        raise DataError(path, "image", "no such file")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise DataError(path, "image", "not a PNG file (the report inlines PNG images only)")
    name = path.relative_to(results_dir) if path.is_relative_to(results_dir) else path.name
    return (
        f"<figure><img src=\"{data_url(data, 'image/png')}\" alt=\"{esc(name)}\">"
        f"<figcaption>{esc(name)}</figcaption></figure>"
    )


def _provenance_section(records: list[dict], results_dir: Path) -> str:
    entries = [(field, _distinct(records, field)) for field in PROVENANCE_FIELDS]
    created = sorted(r["created"] for r in records if r.get("created"))
    if created:
        entries.append(("created", f"{created[0]} … {created[-1]}" if created[0] != created[-1] else created[0]))
    rows = "".join(f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in entries if value)
    parts = ["<h2>Provenance</h2>", f"<dl>{rows}</dl>" if rows else "<p>No result records in this folder.</p>"]
    for name in PROVENANCE_FILES:
        path = results_dir / name
        if path.is_file():
            parts.append(f"<h3>{esc(name)}</h3>\n<pre>{esc(path.read_text(encoding='utf-8'))}</pre>")
    return "\n".join(parts)


def _distinct(records: list[dict], field: str) -> str:
    values = sorted({str(r[field]) for r in records if r.get(field) is not None})
    return ", ".join(values)
