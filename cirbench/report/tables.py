"""Result tables in the layout of the FACap paper's Table 3, built as the one table model
(``report.table_model``; rendered by ``report.table_formats``).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cirbench.errors import DataError
from cirbench.eval.metrics import category_mean
from cirbench.report.table_model import (
    CONTEXT, COUNT, FLAGS, LABEL, SETTING, SOURCE, Cell, Column, Row, Table,
)

TABLE3_CATEGORIES = ("dress", "shirt", "toptee")
def reported_file(name: str) -> Path:
    """A file of the paper's printed numbers: package data (``cirbench.reported``, the repository's
    ``results/reported/``), read through importlib.resources, so a wheel install has it."""
    from importlib import resources

    return Path(str(resources.files("cirbench.reported").joinpath(name)))


REPORTED_TABLE3 = reported_file("facap_table3_fashioniq_val.csv")
REPORTED_GROUP = ("fashioniq/v1", "fashioniq", "val")  # what the paper's Table 3 measured
FLAG_TOLERANCE = 0.15  # points; above what rounding of printed values can explain


@dataclass
class BenchmarkTable(Table):
    """A Table-3 table: one (protocol, dataset, split), its categories and cut-offs."""

    protocol: str = ""
    dataset: str = ""
    split: str = ""
    categories: tuple[str, ...] = ()
    ks: tuple[int, ...] = ()


def benchmark_table(protocol: str, dataset: str, split: str, categories: Sequence[str], ks: Sequence[int]) -> BenchmarkTable:
    """An empty Table-3 table: model, source, R@K per category, the averages and the headline;
    in CSV also protocol, dataset, split, the reported rows' setting, query counts and flags."""
    columns = [Column(key, key, CONTEXT, shown=False) for key in ("protocol", "dataset", "split")]
    columns += [Column("model", "model", LABEL), Column("source", "source", SOURCE), Column("setting", "setting", SETTING, shown=False)]
    columns += [Column(f"{c}_r{k}", f"{c} R@{k}", group=c, sub=f"R@{k}") for c in categories for k in ks]
    columns += [Column(f"avg_r{k}", f"avg R@{k}", group="average", sub=f"R@{k}") for k in ks]
    columns.append(Column("avg", "avg", group="average", sub="avg"))
    columns += [Column(f"{c}_{n}", f"{c}_{n}", COUNT, index=i, group=c, shown=False)
                for c in categories for i, n in enumerate(("n_queries", "n_queries_total"))]
    columns.append(Column("flagged", "flagged", FLAGS, shown=False))
    return BenchmarkTable(
        title=f"{dataset} {split} — protocol {protocol}", name="-".join([dataset, split, protocol.replace("/", "_")]),
        columns=tuple(columns), context={"protocol": protocol, "dataset": dataset, "split": split},
        protocol=protocol, dataset=dataset, split=split, categories=tuple(categories), ks=tuple(ks),
    )


# ---- building tables from records ------------------------------------------------------------


def build_tables(
    records: Sequence[dict[str, Any]], ranks: Sequence[dict[str, Any]] = (), *, reported: bool = False, ci: bool = False,
    errors: Sequence[dict[str, Any]] = (),
) -> list[BenchmarkTable]:
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
        for previous, row in zip(table.rows, table.rows[1:]):
            row.new_section = row.source != previous.source  # a rule between reported, measured and error rows
    return tables


def _error_group(error: dict[str, Any]) -> tuple[str, str, str]:
    return error.get("protocol") or REPORTED_GROUP[0], error["dataset"], error.get("split") or "val"


def _add_error_rows(table: BenchmarkTable, errors: Sequence[dict[str, Any]]) -> None:
    measured = {row.label for row in table.rows}
    failed = {e["label"]: e for e in errors if _error_group(e) == (table.protocol, table.dataset, table.split)}
    new = {label: e for label, e in failed.items() if label not in measured}
    for label, error in new.items():
        table.rows.append(Row((label,), "error", setting=error["error"].splitlines()[0][:80]))
    if new:
        table.notes.append("error rows: the evaluation failed (message in the source column; "
                           "the traceback is in errors.jsonl beside results.jsonl)")


def _build_table(group: tuple[str, str, str], records: list[dict], ranks: Sequence[dict], reported: bool, ci: bool) -> BenchmarkTable:
    from cirbench.eval.protocols import get_protocol

    protocol_id, dataset, split = group
    ks = tuple(get_protocol(protocol_id).headline_ks)
    found = {r["category"] for r in records}
    categories = TABLE3_CATEGORIES + tuple(sorted(found - set(TABLE3_CATEGORIES)))
    table = benchmark_table(protocol_id, dataset, split, categories, ks)
    if reported:
        table.rows.extend(reported_rows(table))
    for label, (model, latest) in _measured_groups(records).items():
        table.rows.append(_measured_row(table, label, model, latest, ranks, ci))
    table.notes.extend(_size_notes(table, records, ranks))
    table.notes.extend(_count_notes(table))
    return table


def _size_notes(table: BenchmarkTable, records: list[dict], ranks: Sequence[dict]) -> list[str]:
    """The benchmark's size per category (annotated queries; gallery images where ranks are known),
    so every table says what its numbers are over."""
    queries = {r["category"]: r["n_queries_total"] for r in records}
    galleries = {r["category"]: r["n_gallery"] for r in ranks
                 if (r["protocol"], r["dataset"], r["split"]) == (table.protocol, table.dataset, table.split)}
    parts = [f"{c} {queries[c]:,}" + (f" / {galleries[c]:,}" if c in galleries else "")
             for c in table.categories if c in queries]
    what = "queries / gallery images" if galleries else "queries"
    return [f"{what}: " + ", ".join(parts)] if parts else []


def _measured_groups(records: list[dict]) -> dict[str, tuple[str, dict[str, dict[str, dict]]]]:
    """{row label: (model spec, {category: {metric: record}})}, each category from its latest run.

    A row is one model at one checkpoint; the label carries the checkpoint hash only when the
    same model appears with several checkpoints; a record's optional ``label`` replaces both."""
    by_row: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        by_row.setdefault((record["model"], record["checkpoint_hash"], record.get("label") or ""), []).append(record)
    models = [model for model, _, label in by_row if not label]
    groups = {}
    for (model, checkpoint, label), rows in by_row.items():
        label = label or (f"{model} @{str(checkpoint)[:8]}" if models.count(model) > 1 else model)
        groups[label] = (model, _latest_by_category(rows))
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


def _measured_row(
    table: BenchmarkTable, label: str, model: str, latest: dict[str, dict[str, dict]], ranks: Sequence[dict], ci: bool
) -> Row:
    row = Row((label,), "measured", model=model)
    for category, metrics in latest.items():
        for k in table.ks:
            record = metrics.get(f"recall@{k}")
            if record is not None:
                row.cells[f"{category}_r{k}"] = Cell(record["value"], record["ci_low"], record["ci_high"])
        any_record = next(iter(metrics.values()))
        row.counts[category] = (any_record["n_queries"], any_record["n_queries_total"])
    _add_averages(table, row)
    if ci and "avg" in row.cells:
        _add_average_intervals(table, row, latest, ranks)
    return row


def _averages(table: BenchmarkTable, row: Row) -> dict[str, float]:
    """The averages the row's per-category values give (``category_mean``: none while a category
    lacks a value): mean R@K over the categories, and the headline (their mean over K)."""
    means = {f"avg_r{k}": category_mean({c: _value(row, f"{c}_r{k}") for c in table.categories}) for k in table.ks}
    if any(mean is None for mean in means.values()):
        return {}
    return {**means, "avg": sum(means.values()) / len(means)}


def _value(row: Row, key: str) -> float | None:
    cell = row.cells.get(key)
    return None if cell is None else cell.value


def _add_averages(table: BenchmarkTable, row: Row) -> None:
    for key, value in _averages(table, row).items():
        row.cells[key] = Cell(value)


def _add_average_intervals(table: BenchmarkTable, row: Row, latest: dict[str, dict[str, dict]], ranks: Sequence[dict]) -> None:
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


def reported_rows(table: BenchmarkTable, path: Path = REPORTED_TABLE3) -> list[Row]:
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


def _reported_row(table: BenchmarkTable, values: dict[str, str]) -> Row:
    row = Row((values["model"],), "reported", values["setting"])
    for key in table.column_keys():
        if values.get(key):
            row.cells[key] = Cell(float(values[key]), printed=values[key])
    for key, recomputed in _averages(table, row).items():
        cell = row.cells.get(key)
        if cell is not None and abs(cell.value - recomputed) > FLAG_TOLERANCE:
            cell.flagged = True
    return row


def _flag_notes(row: Row, table: BenchmarkTable) -> list[str]:
    recomputed = _averages(table, row)
    return [
        f"† {row.label} {table.column_header(key)}: printed {row.cells[key].printed}, but its printed "
        f"per-category values give {recomputed[key]:.2f}; kept as printed"
        for key in recomputed
        if key in row.cells and row.cells[key].flagged
    ]


# ---- reading ----------------------------------------------------------------------------------


def load_tables(paths: Sequence[str | Path], *, reported: bool = False, ci: bool = False) -> list[Table]:
    """Tables from result files or run folders (and their ranks.jsonl for intervals of averages,
    their errors.jsonl for error rows)."""
    from cirbench.results import read_errors, read_ranks, read_records

    records = read_records(paths) if paths else []
    ranks = read_ranks(paths) if paths else []
    errors = read_errors(paths) if paths else []
    return build_tables(records, ranks, reported=reported, ci=ci, errors=errors)
