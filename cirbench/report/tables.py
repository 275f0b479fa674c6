"""Result tables in the layout of the FACap paper's Table 3, as rich, Markdown, CSV and LaTeX.

Rows are models; columns are R@10 and R@50 (the protocol's ``headline_ks``) per category, then the
unweighted mean over categories and the headline. One table per (protocol, dataset, split): only
results of the same protocol are ever compared. Averages are computed here from the stored
per-category records, and only for rows that have every category of the table. Where a category
was evaluated on fewer queries than its annotation file holds, a note says how many
(``n=1,203/2,017``).

Reported rows (``--reported``) are the paper's printed numbers from ``results/reported/``, shown
as printed and marked "reported"; a printed average that disagrees with the mean of its own
printed per-category values by more than ``FLAG_TOLERANCE`` points is kept and flagged.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cirbench.data.schema import DataError

TABLE3_CATEGORIES = ("dress", "shirt", "toptee")
REPORTED_TABLE3 = Path(__file__).resolve().parents[2] / "results" / "reported" / "facap_table3_fashioniq_val.csv"
REPORTED_GROUP = ("fashioniq/v1", "fashioniq", "val")  # what the paper's Table 3 measured
FLAG_TOLERANCE = 0.15  # points; above what rounding of printed values can explain
FORMATS = ("rich", "markdown", "csv", "latex")
FILE_SUFFIXES = {"rich": ".txt", "markdown": ".md", "csv": ".csv", "latex": ".tex"}


@dataclass
class Cell:
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    printed: str | None = None  # reported numbers keep the paper's own digits
    flagged: bool = False

    def text(self, ci: bool) -> str:
        if self.value is None:
            return "—"
        text = self.printed if self.printed is not None else f"{self.value:.2f}"
        if ci and self.ci_low is not None and self.ci_high is not None:
            text += f" [{self.ci_low:.1f}, {self.ci_high:.1f}]"
        return text + ("†" if self.flagged else "")


@dataclass
class Row:
    label: str
    source: str  # "measured" or "reported"
    setting: str = ""  # reported rows: the paper's setting (zero_shot, fine_tuned)
    cells: dict[str, Cell] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # category -> (used, total)

    @property
    def origin(self) -> str:
        return f"{self.source} ({self.setting})" if self.setting else self.source


@dataclass
class Table:
    protocol: str
    dataset: str
    split: str
    categories: tuple[str, ...]
    ks: tuple[int, ...]
    rows: list[Row]
    notes: list[str]

    @property
    def title(self) -> str:
        return f"{self.dataset} {self.split} — protocol {self.protocol}"

    @property
    def slug(self) -> str:
        return "-".join([self.dataset, self.split, self.protocol.replace("/", "_")])

    def column_keys(self) -> list[str]:
        per_category = [f"{c}_r{k}" for c in self.categories for k in self.ks]
        return per_category + [f"avg_r{k}" for k in self.ks] + ["avg"]

    def column_header(self, key: str) -> str:
        name, _, k = key.rpartition("_r")
        return f"{name} R@{k}" if name else "avg"


# ---- building tables from records ------------------------------------------------------------


def build_tables(
    records: Sequence[dict[str, Any]], ranks: Sequence[dict[str, Any]] = (), *, reported: bool = False, ci: bool = False,
    errors: Sequence[dict[str, Any]] = (),
) -> list[Table]:
    """One table per (protocol, dataset, split) found in ``records`` (+ the paper's if ``reported``).

    ``errors``: failed evaluations (``evaluate_all``'s error rows); each becomes a row of gaps in
    its benchmark's table, unless a later evaluation of the same label succeeded."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["protocol"], record["dataset"], record["split"]), []).append(record)
    if reported:
        groups.setdefault(REPORTED_GROUP, [])
    for error in errors:
        groups.setdefault(_error_group(error), [])
    tables = [_build_table(key, rows, ranks, reported and key == REPORTED_GROUP, ci) for key, rows in sorted(groups.items())]
    for table in tables:
        _add_error_rows(table, errors)
    return tables


def _error_group(error: dict[str, Any]) -> tuple[str, str, str]:
    return error.get("protocol") or REPORTED_GROUP[0], error["dataset"], error.get("split") or "val"


def _add_error_rows(table: Table, errors: Sequence[dict[str, Any]]) -> None:
    measured = {row.label for row in table.rows}
    failed = {e["label"]: e for e in errors if _error_group(e) == (table.protocol, table.dataset, table.split)}
    new = {label: e for label, e in failed.items() if label not in measured}
    for label, error in new.items():
        table.rows.append(Row(label, "error", setting=error["error"].splitlines()[0][:80]))
    if new:
        table.notes.append("error rows: the evaluation failed (message in the source column; "
                           "the traceback is in errors.jsonl beside results.jsonl)")


def _build_table(group: tuple[str, str, str], records: list[dict], ranks: Sequence[dict], reported: bool, ci: bool) -> Table:
    from cirbench.eval.protocols import get_protocol

    protocol_id, dataset, split = group
    ks = tuple(get_protocol(protocol_id).headline_ks)
    found = {r["category"] for r in records}
    categories = TABLE3_CATEGORIES + tuple(sorted(found - set(TABLE3_CATEGORIES)))
    table = Table(protocol_id, dataset, split, categories, ks, [], [])
    if reported:
        table.rows.extend(reported_rows(table))
    for label, latest in _measured_groups(records).items():
        table.rows.append(_measured_row(table, label, latest, ranks, ci))
    table.notes.extend(_size_notes(table, records, ranks))
    table.notes.extend(_count_notes(table))
    return table


def _size_notes(table: Table, records: list[dict], ranks: Sequence[dict]) -> list[str]:
    """The benchmark's size per category (annotated queries; gallery images where ranks are known),
    so every table says what its numbers are over."""
    queries = {r["category"]: r["n_queries_total"] for r in records}
    galleries = {r["category"]: r["n_gallery"] for r in ranks
                 if (r["protocol"], r["dataset"], r["split"]) == (table.protocol, table.dataset, table.split)}
    parts = [f"{c} {queries[c]:,}" + (f" / {galleries[c]:,}" if c in galleries else "")
             for c in table.categories if c in queries]
    what = "queries / gallery images" if galleries else "queries"
    return [f"{what}: " + ", ".join(parts)] if parts else []


def _measured_groups(records: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """{row label: {category: {metric: record}}}, each category from its latest run.

    A row is one model at one checkpoint; the label carries the checkpoint hash only when the
    same model appears with several checkpoints; a record's optional ``label`` replaces both."""
    by_row: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        by_row.setdefault((record["model"], record["checkpoint_hash"], record.get("label") or ""), []).append(record)
    models = [model for model, _, label in by_row if not label]
    groups = {}
    for (model, checkpoint, label), rows in by_row.items():
        label = label or (f"{model} @{str(checkpoint)[:8]}" if models.count(model) > 1 else model)
        groups[label] = _latest_by_category(rows)
    return groups


def _latest_by_category(records: list[dict]) -> dict[str, dict[str, dict]]:
    """{category: {metric: record}} from the latest run (by creation time) that measured it."""
    by_category: dict[str, list[dict]] = {}
    for record in records:
        by_category.setdefault(record["category"], []).append(record)
    latest = {}
    for category, rows in by_category.items():
        newest = max(rows, key=lambda r: (r["created"] or "", r["run_id"]))["run_id"]
        latest[category] = {r["metric"]: r for r in rows if r["run_id"] == newest}
    return latest


def _measured_row(table: Table, label: str, latest: dict[str, dict[str, dict]], ranks: Sequence[dict], ci: bool) -> Row:
    row = Row(label, "measured")
    for category, metrics in latest.items():
        for k in table.ks:
            record = metrics.get(f"recall@{k}")
            if record is not None:
                row.cells[f"{category}_r{k}"] = Cell(record["value"], record["ci_low"], record["ci_high"])
        any_record = next(iter(metrics.values()))
        row.counts[category] = (any_record["n_queries"], any_record["n_queries_total"])
    _add_averages(table, row)
    if ci and _has_all_categories(table, row):
        _add_average_intervals(table, row, latest, ranks)
    return row


def _has_all_categories(table: Table, row: Row) -> bool:
    return all(row.cells.get(f"{c}_r{k}", Cell(None)).value is not None for c in table.categories for k in table.ks)


def _add_averages(table: Table, row: Row) -> None:
    if not _has_all_categories(table, row):
        return
    for k in table.ks:
        row.cells[f"avg_r{k}"] = Cell(sum(row.cells[f"{c}_r{k}"].value for c in table.categories) / len(table.categories))
    row.cells["avg"] = Cell(sum(row.cells[f"avg_r{k}"].value for k in table.ks) / len(table.ks))


def _add_average_intervals(table: Table, row: Row, latest: dict[str, dict[str, dict]], ranks: Sequence[dict]) -> None:
    """Bootstrap intervals of the averages, from the ranks the records were computed from."""
    import numpy as np

    from cirbench.eval.metrics import summarize

    index = {_rank_key(r): r for r in ranks}
    chosen = {c: next(iter(latest[c].values())) for c in table.categories}
    found = {c: index.get(_rank_key(record)) for c, record in chosen.items()}
    if any(r is None for r in found.values()):
        return
    seed = next(iter(chosen.values()))["seed"] or 0
    ranks_by_category = {c: np.asarray(r["ranks"], dtype=np.int64) for c, r in found.items()}
    summary = summarize(ranks_by_category, table.ks, table.ks, seed=seed)
    for k in table.ks:
        row.cells[f"avg_r{k}"].ci_low, row.cells[f"avg_r{k}"].ci_high = summary.average[k].ci_low, summary.average[k].ci_high
    row.cells["avg"].ci_low, row.cells["avg"].ci_high = summary.headline.ci_low, summary.headline.ci_high


def _rank_key(row: dict) -> tuple:
    return tuple(row[f] for f in ("run_id", "model", "checkpoint_hash", "dataset", "category", "split", "protocol"))


def _count_notes(table: Table) -> list[str]:
    notes = []
    for row in table.rows:
        partial = [f"{c} n={used:,}/{total:,}" for c, (used, total) in row.counts.items() if used < total]
        if partial:
            notes.append(f"{row.label}: evaluated on fewer queries than annotated ({', '.join(partial)})")
    return notes


# ---- the paper's reported rows --------------------------------------------------------------


def reported_rows(table: Table, path: Path = REPORTED_TABLE3) -> list[Row]:
    """The paper's rows as printed, with a note for each printed average that does not add up."""
    if not path.is_file():
        raise DataError(path, "reported", "file not found (the paper's Table 3 numbers)")
    with path.open(newline="", encoding="utf-8") as handle:
        printed = list(csv.DictReader(handle))
    rows = []
    for number, values in enumerate(printed, start=2):
        try:
            rows.append(_reported_row(table, values))
        except (KeyError, ValueError) as exc:
            raise DataError(path, f"line {number}", f"bad reported row: {exc}") from None
        table.notes.extend(_flag_notes(rows[-1], table))
    return rows


def _reported_row(table: Table, values: dict[str, str]) -> Row:
    row = Row(values["model"], "reported", values["setting"])
    for key in table.column_keys():
        if values.get(key):
            row.cells[key] = Cell(float(values[key]), printed=values[key])
    for key, recomputed in _recomputed_averages(table, row).items():
        cell = row.cells.get(key)
        if cell is not None and abs(cell.value - recomputed) > FLAG_TOLERANCE:
            cell.flagged = True
    return row


def _recomputed_averages(table: Table, row: Row) -> dict[str, float]:
    """The averages as the printed per-category values imply them."""
    if not _has_all_categories(table, row):
        return {}
    means = {f"avg_r{k}": sum(row.cells[f"{c}_r{k}"].value for c in table.categories) / len(table.categories) for k in table.ks}
    return {**means, "avg": sum(means.values()) / len(means)}


def _flag_notes(row: Row, table: Table) -> list[str]:
    recomputed = _recomputed_averages(table, row)
    return [
        f"† {row.label} {table.column_header(key)}: printed {row.cells[key].printed}, but its printed "
        f"per-category values give {recomputed[key]:.2f}; kept as printed"
        for key in recomputed
        if key in row.cells and row.cells[key].flagged
    ]


# ---- rendering -------------------------------------------------------------------------------


def render(table: Table, fmt: str, *, ci: bool = False) -> str:
    """The table as text in ``fmt`` (one of FORMATS); rich renders to plain text."""
    renderers = {"rich": _rich_text, "markdown": to_markdown, "csv": to_csv, "latex": to_latex}
    if fmt not in renderers:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderers[fmt](table, ci=ci)


def to_rich(table: Table, *, ci: bool = False):
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, caption="\n".join(table.notes) or None, caption_justify="left")
    rich_table.add_column("model")
    rich_table.add_column("source")
    for key in table.column_keys():
        rich_table.add_column(table.column_header(key), justify="right")
    previous_source = None
    for row in table.rows:
        if previous_source is not None and row.source != previous_source:
            rich_table.add_section()
        previous_source = row.source
        rich_table.add_row(row.label, row.origin, *_cell_texts(table, row, ci))
    return rich_table


def _rich_text(table: Table, *, ci: bool = False) -> str:
    from rich.console import Console

    console = Console(record=True, width=400, file=io.StringIO())
    console.print(to_rich(table, ci=ci))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def _cell_texts(table: Table, row: Row, ci: bool) -> list[str]:
    return [row.cells.get(key, Cell(None)).text(ci) for key in table.column_keys()]


def to_markdown(table: Table, *, ci: bool = False) -> str:
    headers = ["model", "source", *(table.column_header(k) for k in table.column_keys())]
    lines = [f"### {table.title}", "", md_line(headers), md_line(["---", "---"] + ["---:"] * (len(headers) - 2))]
    lines += [md_line([row.label, row.origin, *_cell_texts(table, row, ci)]) for row in table.rows]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def md_line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_csv(table: Table, *, ci: bool = False) -> str:
    """Machine-readable: numbers unformatted, intervals as columns, query counts per category."""
    keys = table.column_keys()
    header = ["protocol", "dataset", "split", "model", "source", "setting", *keys]
    header += [f"{k}_{end}" for k in keys for end in ("ci_low", "ci_high")] if ci else []
    header += [f"{c}_{n}" for c in table.categories for n in ("n_queries", "n_queries_total")] + ["flagged"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        cells = [row.cells.get(k, Cell(None)) for k in keys]
        line = [table.protocol, table.dataset, table.split, row.label, row.source, row.setting]
        line += [csv_number(c) for c in cells]
        line += [csv_float(v) for c in cells for v in (c.ci_low, c.ci_high)] if ci else []
        line += [n for c in table.categories for n in row.counts.get(c, ("", ""))]
        line.append(" ".join(k for k, c in zip(keys, cells) if c.flagged))
        writer.writerow(line)
    return out.getvalue()


def csv_number(cell: Cell) -> str:
    return cell.printed if cell.printed is not None else csv_float(cell.value)


def csv_float(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text).replace("—", "--").replace("†", r"$^\dagger$")


def to_latex(table: Table, *, ci: bool = False) -> str:
    """A booktabs tabular with a two-level header (category over R@K), notes below."""
    groups = [*table.categories, "average"]
    widths = [len(table.ks)] * len(table.categories) + [len(table.ks) + 1]
    n_columns = 2 + sum(widths)
    spans = " & ".join(rf"\multicolumn{{{w}}}{{c}}{{{tex_escape(g)}}}" for g, w in zip(groups, widths))
    sub = [f"R@{k}" for _ in table.categories for k in table.ks] + [f"R@{k}" for k in table.ks] + ["avg"]
    lines = [
        f"% {tex_escape(table.title)}",
        r"\begin{tabular}{ll" + "r" * sum(widths) + "}",
        r"\toprule",
        rf"Model & Source & {spans} \\",
        " & & " + " & ".join(sub) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex_escape(t) for t in [row.label, row.origin, *_cell_texts(table, row, ci)]) + r" \\" for row in table.rows]
    lines.append(r"\bottomrule")
    lines += [rf"\multicolumn{{{n_columns}}}{{l}}{{\footnotesize {tex_escape(note)}}} \\" for note in table.notes]
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


def write_tables(tables: Sequence[Table], out_dir: str | Path, *, ci: bool = False) -> list[Path]:
    """Every table in every format: ``<out_dir>/<slug><suffix>``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        for fmt in FORMATS:
            path = out_dir / f"{table.slug}{FILE_SUFFIXES[fmt]}"
            path.write_text(render(table, fmt, ci=ci), encoding="utf-8")
            written.append(path)
    return written


def load_tables(paths: Sequence[str | Path], *, reported: bool = False, ci: bool = False) -> list[Table]:
    """Tables from result files or run folders (and their ranks.jsonl for intervals of averages,
    their errors.jsonl for error rows)."""
    from cirbench.results import read_errors, read_ranks, read_records

    records = read_records(paths) if paths else []
    ranks = read_ranks(paths) if paths else []
    errors = read_errors(paths) if paths else []
    return build_tables(records, ranks, reported=reported, ci=ci, errors=errors)


def print_wide(renderable, console=None) -> None:
    """Print a table at its natural width, even past a narrow terminal: numbers never get cut."""
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console()
    needed = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
    if needed > console.width:
        console = Console(width=needed)
    console.print(renderable)
