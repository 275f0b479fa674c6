"""The paper's findings as paired comparisons of two runs on the same queries, reported honestly.

A finding compares run A with run B on one benchmark split: for each K, the difference in Recall@K
averaged over categories (A - B, points), its 95% paired bootstrap interval and the two-sided
p-value, all from ``cirbench.eval.metrics.paired_test`` over the per-query target ranks of
ranks.jsonl. Runs evaluated on other queries (or under another protocol) are refused.

The verdict is read off the numbers at the 5% level, per K (uncorrected, as each line says) and
overall: ``better`` / ``worse`` when some K differs significantly one way and none the other,
``mixed`` when both, else no significant difference, where "significantly" for the overall verdict
is after Holm's correction over the K tested (R@10 and R@50 are two looks at the same queries).
Several findings are not corrected against each other; every p-value is printed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cirbench.eval.metrics import ComparisonError, PairedTest, QueryRanks, paired_test

if TYPE_CHECKING:
    from cirbench.report.table_model import Row, Table

ALPHA = 0.05
NO_DIFFERENCE = f"no significant difference at {ALPHA:.0%}"
# The paper's four questions, in its order; ``format_findings`` answers each, measured or not.
PAPER_QUESTIONS = (
    "FACap pre-training vs none",
    "multi-head vs global matching",
    "adapters vs none",
    "data-size curve (largest vs smallest fraction)",
)


@dataclass(frozen=True)
class Finding:
    label: str  # the question, e.g. one of PAPER_QUESTIONS
    run_a: str  # "model @checkpoint (run id)" of each side
    run_b: str
    dataset: str
    split: str
    protocol: str
    tests: tuple[PairedTest, ...]  # one per K

    @property
    def n_queries(self) -> int:
        return self.tests[0].n_queries

    @property
    def verdict(self) -> str:
        """A versus B over all K (Holm-corrected): better, worse, mixed, or no significant difference."""
        words = {verdict_of(test) for test in holm_significant(self.tests)}
        if {"better", "worse"} <= words:
            return "mixed"
        return next((word for word in ("better", "worse") if word in words), NO_DIFFERENCE)


def holm_significant(tests: Sequence[PairedTest], alpha: float = ALPHA) -> list[PairedTest]:
    """The tests rejected by Holm's step-down procedure at family-wise level ``alpha``."""
    ordered = sorted(tests, key=lambda test: test.p_value)
    rejected = []
    for position, test in enumerate(ordered):
        if test.p_value >= alpha / (len(ordered) - position):
            break
        rejected.append(test)
    return rejected


def verdict_of(test: PairedTest) -> str:
    if test.p_value >= ALPHA or test.difference == 0:
        return NO_DIFFERENCE
    return "better" if test.difference > 0 else "worse"


def select_rows(rows: Sequence[Mapping[str, Any]], **fields: Any) -> list[Mapping[str, Any]]:
    """The ranks.jsonl rows whose fields equal every given value, e.g. ``model=..., dataset=...``."""
    return [row for row in rows if all(row.get(name) == value for name, value in fields.items())]


def paired_finding(
    ranks_a_rows: Sequence[Mapping[str, Any]],
    ranks_b_rows: Sequence[Mapping[str, Any]],
    *,
    label: str,
    k_list: Sequence[int] = (10, 50),
    seed: int = 0,
) -> Finding:
    """Compare run A with run B, each given as its ranks.jsonl rows (one per category) of one
    dataset split; refuses runs on other queries, categories, protocols or splits."""
    if not k_list:
        raise ValueError("k_list is empty: nothing to compare")
    side_a, side_b = _one_split(ranks_a_rows, "A"), _one_split(ranks_b_rows, "B")
    if side_a != side_b:
        raise ComparisonError(f"runs are on different splits: A on {'/'.join(side_a)}, B on {'/'.join(side_b)}")
    a, b = _query_ranks(ranks_a_rows), _query_ranks(ranks_b_rows)
    tests = tuple(paired_test(a, b, k, seed=seed) for k in k_list)
    dataset, split = side_a
    return Finding(label, _run_name(ranks_a_rows), _run_name(ranks_b_rows), dataset, split, a[0].protocol, tests)


def _one_split(rows: Sequence[Mapping[str, Any]], side: str) -> tuple[str, str]:
    splits = {(row["dataset"], row["split"]) for row in rows}
    if len(splits) != 1:
        found = ", ".join("/".join(s) for s in sorted(splits)) or "no rows"
        raise ComparisonError(f"run {side} must cover exactly one dataset split; found {found}")
    return splits.pop()


def _query_ranks(rows: Sequence[Mapping[str, Any]]) -> list[QueryRanks]:
    return [
        QueryRanks(row["protocol"], row["category"], list(row["query_ids"]), np.asarray(row["ranks"], dtype=np.int64))
        for row in rows
    ]


def _run_name(rows: Sequence[Mapping[str, Any]]) -> str:
    """Each run as "model @checkpoint (run id)", after its table label where the evaluation gave one."""
    return " + ".join(sorted({_one_run_name(row) for row in rows}))


def _one_run_name(row: Mapping[str, Any]) -> str:
    name = f"{row['model']} @{str(row['checkpoint_hash'])[:8]} (run {row['run_id']})"
    return f"{row['label']}: {name}" if row.get("label") else name


def latest_per_category(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per category: the newest run's (reruns append to the same folder)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row["category"] not in newest or row["run_id"] > newest[row["category"]]["run_id"]:
            newest[row["category"]] = row
    return list(newest.values())


def findings_between_labels(
    ranks: Sequence[Mapping[str, Any]], title: str, label_a: str, label_b: str, datasets: Sequence[str]
) -> list[Finding]:
    """``title`` answered on each of ``datasets`` where both labelled rows were evaluated (latest run each)."""
    findings = []
    for dataset in datasets:
        a = latest_per_category(select_rows(ranks, label=label_a, dataset=dataset))
        b = latest_per_category(select_rows(ranks, label=label_b, dataset=dataset))
        if a and b:
            findings.append(paired_finding(a, b, label=title))
    return findings


# ---- printing --------------------------------------------------------------------------------


def format_findings(findings: Sequence[Finding], questions: Sequence[str] = PAPER_QUESTIONS) -> str:
    """Every one of ``questions`` with its measured findings (or "not measured"), then any others."""
    blocks = []
    for question in questions:
        answers = [_format_one(f) for f in findings if f.label == question]
        blocks.extend(answers or [f"{question}: not measured in this run"])
    blocks.extend(_format_one(f) for f in findings if f.label not in questions)
    return "\n\n".join(blocks) + "\n"


def _format_one(finding: Finding) -> str:
    lines = [
        f"{finding.label} — {finding.dataset} {finding.split} ({finding.protocol}), {finding.n_queries:,} paired queries",
        f"  A: {finding.run_a}",
        f"  B: {finding.run_b}",
    ]
    lines += [_format_test(test) for test in finding.tests]
    lines.append(f"  verdict (Holm-corrected over R@{', R@'.join(str(t.k) for t in finding.tests)}): "
                 f"A vs B: {finding.verdict}")
    return "\n".join(lines)


def _format_test(test: PairedTest) -> str:
    return (
        f"  mean R@{test.k}: A {test.recall_a:.2f} vs B {test.recall_b:.2f}, difference {test.difference:+.2f} points "
        f"[95% CI {test.ci_low:+.2f}, {test.ci_high:+.2f}], {_p_text(test.p_value)}, "
        f"hit only by A / only by B: {test.a_only} / {test.b_only} -> {verdict_of(test)}"
    )


def _p_text(p_value: float) -> str:
    return f"p = {p_value:.3f}" if p_value >= 0.001 else "p < 0.001"


# ---- as a table ------------------------------------------------------------------------------


def findings_table(findings: Sequence[Finding], questions: Sequence[str] = PAPER_QUESTIONS, title: str = "") -> "Table":
    """The findings as the one table model: per finding the question, the benchmark, runs A and B,
    per K the mean recall of each, the difference with its 95% interval and the p-value, and the
    Holm-corrected verdict; every one of ``questions`` appears, measured or not (as in
    ``format_findings``)."""
    from cirbench.report.table_model import LABEL, Column, Row, Table

    ks = sorted({test.k for finding in findings for test in finding.tests}) or [10, 50]
    texts = ("question", "benchmark", "A", "B")
    columns = [Column(key, key, LABEL, index=i) for i, key in enumerate(texts)]
    for k in ks:
        group = f"mean R@{k}"
        columns += [Column(f"r{k}_a", f"R@{k} A", group=group, sub="A"), Column(f"r{k}_b", f"R@{k} B", group=group, sub="B"),
                    Column(f"r{k}_diff", f"R@{k} A − B", group=group, sub="A − B [95% CI]"),
                    Column(f"r{k}_p", f"R@{k} p", group=group, sub="p")]
    columns.append(Column("verdict", f"verdict (Holm over R@{', R@'.join(map(str, ks))})", LABEL, index=len(texts)))
    table = Table(title, "findings", tuple(columns))
    for question in [*questions, None]:
        answers = [f for f in findings if f.label == question or (question is None and f.label not in questions)]
        if question is not None and not answers:
            table.rows.append(Row((question, "—", "—", "—", "not measured in this run"), source="not-measured"))
        table.rows += [_finding_row(finding) for finding in answers]
    return table


def _finding_row(finding: Finding) -> "Row":
    from cirbench.report.table_model import Cell, Row

    row = Row((finding.label, f"{finding.dataset} {finding.split} ({finding.n_queries:,} queries)",
               finding.run_a, finding.run_b, f"A vs B: {finding.verdict}"))
    for test in finding.tests:
        row.cells |= {f"r{test.k}_a": Cell(test.recall_a), f"r{test.k}_b": Cell(test.recall_b),
                      f"r{test.k}_diff": Cell(test.difference, test.ci_low, test.ci_high, signed=True),
                      f"r{test.k}_p": Cell(test.p_value, printed=_p_text(test.p_value).removeprefix("p ").lstrip("= "))}
    return row

