"""What a results folder's report shows besides its Table-3 tables, kept as data beside the
results (``report_plan.json``), so the report is always rebuilt from the records and this plan,
never from files rendered earlier:

- paper tables: a layout of ``report.paper_tables`` and which result label fills which cell;
- findings: the questions (a title and the two result labels it compares), the benchmarks they
  are asked on, and which questions the text lists even when they were not measured.

The demo and the ablations record their entries when they write their reports (each entry under
its name, so ablations sharing one folder add to one plan); ``build_paper_tables`` and
``build_findings`` make the very objects the demo printed, and ``cirbench report`` renders them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cirbench.errors import DataError
from cirbench.files import write_json_atomic

if TYPE_CHECKING:
    from cirbench.report.findings import Finding
    from cirbench.report.paper_tables import MeasuredRow
    from cirbench.report.table_model import Table
    from cirbench.report.tables import BenchmarkTable

PLAN_FILE = "report_plan.json"


@dataclass(frozen=True)
class PaperTableSpec:
    layout: str  # a key of paper_tables.LAYOUTS; also the entry's name
    rows: tuple["MeasuredRow", ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FindingsSpec:
    name: str  # the findings text's file stem: "findings", "findings_table5_components"
    questions: tuple[tuple[str, str, str], ...]  # (title, result label of A, result label of B)
    asked: tuple[str, ...]  # the titles listed, measured or not, in order
    datasets: tuple[str, ...]  # benchmarks each question is answered on


def record_plan(results_dir: Path, *, paper_tables: Sequence[PaperTableSpec] = (),
                findings: Sequence[FindingsSpec] = ()) -> Path | None:
    """Add (or replace, by name) these entries in ``results_dir/report_plan.json`` (not written
    when there is nothing to record)."""
    path = Path(results_dir) / PLAN_FILE
    if not paper_tables and not findings:
        return None
    plan = _read_json(path) if path.is_file() else {"paper_tables": {}, "findings": {}}
    for spec in paper_tables:
        plan["paper_tables"][spec.layout] = {
            "rows": [{"settings": list(row.settings), "labels": dict(row.labels)} for row in spec.rows],
            "notes": list(spec.notes)}
    for spec in findings:
        plan["findings"][spec.name] = {"questions": [list(q) for q in spec.questions], "asked": list(spec.asked),
                                       "datasets": list(spec.datasets)}
    return write_json_atomic(path, plan)


def read_plan(results_dir: Path) -> tuple[list[PaperTableSpec], list[FindingsSpec]]:
    """The recorded entries (none when the folder has no plan)."""
    from cirbench.report.paper_tables import LAYOUTS, MeasuredRow

    path = Path(results_dir) / PLAN_FILE
    if not path.is_file():
        return [], []
    plan = _read_json(path)
    try:
        tables = [PaperTableSpec(name, tuple(MeasuredRow(tuple(r["settings"]), dict(r["labels"])) for r in entry["rows"]),
                                 tuple(entry["notes"])) for name, entry in plan["paper_tables"].items()]
        findings = [FindingsSpec(name, tuple(tuple(q) for q in entry["questions"]), tuple(entry["asked"]),
                                 tuple(entry["datasets"])) for name, entry in plan["findings"].items()]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, "entries", f"not a report plan ({type(exc).__name__}: {exc})") from None
    unknown = [spec.layout for spec in tables if spec.layout not in LAYOUTS]
    if unknown:
        raise DataError(path, "paper_tables", f"unknown layout {unknown[0]!r}; known: {', '.join(LAYOUTS)}")
    return tables, findings


def _read_json(path: Path) -> dict[str, Any]:
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, "file", f"not a JSON file ({exc})") from None
    if not isinstance(plan, dict):
        raise DataError(path, "file", "expected a JSON object")
    return plan


def build_paper_tables(specs: Sequence[PaperTableSpec], tables: Sequence["BenchmarkTable"]) -> list["Table"]:
    """Each spec's paper table, filled from the folder's Table-3 ``tables``."""
    from cirbench.report.paper_tables import LAYOUTS, build_paper_table

    return [build_paper_table(LAYOUTS[spec.layout], spec.rows, tables, notes=spec.notes) for spec in specs]


def build_findings(spec: FindingsSpec, ranks: Sequence[dict]) -> list["Finding"]:
    """Each question of ``spec`` answered on each benchmark where both of its labels were evaluated."""
    from cirbench.report.findings import findings_between_labels

    return [finding for title, label_a, label_b in spec.questions
            for finding in findings_between_labels(ranks, title, label_a, label_b, spec.datasets)]
