"""Paired findings: verdicts follow the numbers, mismatched runs are refused, printing is honest."""

from __future__ import annotations

import random

import pytest
from report_fixtures import CATEGORIES, eval_result, hit_ranks

from cirbench.eval.metrics import ComparisonError, PairedTest
from cirbench.report.findings import (
    Finding,
    NO_DIFFERENCE,
    PAPER_QUESTIONS,
    findings_between_labels,
    format_findings,
    paired_finding,
    select_rows,
)
from cirbench.results import rank_rows

N = 200  # queries per category


def rows(ranks_by_category, model="m:tiny", checkpoint="ckpt", dataset="synth_fashioniq", run_id="r"):
    return rank_rows(eval_result(model, checkpoint, ranks_by_category, dataset), run_id=run_id, seed=0)


def same_everywhere(ranks):
    return {category: ranks for category in CATEGORIES}


STRONG = same_everywhere(hit_ranks(N, 160))  # 80% hits at both K
WEAK = same_everywhere(hit_ranks(N, 60))  # 30%


def test_clearly_better_run_is_better_at_every_k():
    finding = paired_finding(rows(STRONG, run_id="a"), rows(WEAK, run_id="b"), label=PAPER_QUESTIONS[0])
    assert [t.k for t in finding.tests] == [10, 50]
    for test in finding.tests:
        assert test.difference == pytest.approx(50.0)
        assert test.ci_low > 0 and test.p_value < 0.01
    assert finding.verdict == "better"
    assert finding.n_queries == 3 * N


def test_clearly_worse_run_is_worse():
    finding = paired_finding(rows(WEAK, run_id="a"), rows(STRONG, run_id="b"), label=PAPER_QUESTIONS[0])
    assert all(t.difference == pytest.approx(-50.0) for t in finding.tests)
    assert finding.verdict == "worse"


def test_equal_runs_show_no_difference_even_in_another_query_order():
    a = rows(STRONG, run_id="a")
    b = rows(STRONG, run_id="b")
    for row in b:  # same queries, listed in another order
        pairs = list(zip(row["query_ids"], row["ranks"]))
        random.Random(0).shuffle(pairs)
        row["query_ids"], row["ranks"] = [q for q, _ in pairs], [r for _, r in pairs]
    finding = paired_finding(a, b, label=PAPER_QUESTIONS[1])
    assert all(t.difference == 0 and t.p_value == 1.0 for t in finding.tests)
    assert finding.verdict == NO_DIFFERENCE


def test_a_small_difference_is_not_called_significant():
    slightly = same_everywhere(hit_ranks(N, 61))  # one more hit per category than WEAK
    finding = paired_finding(rows(slightly, run_id="a"), rows(WEAK, run_id="b"), label=PAPER_QUESTIONS[2])
    assert all(t.difference > 0 and t.p_value > 0.05 for t in finding.tests)
    assert finding.verdict == NO_DIFFERENCE


def test_better_at_one_k_and_worse_at_another_is_mixed():
    a = same_everywhere(hit_ranks(N, 120, hit_rank=5, miss_rank=900))  # 60% at both K
    b = same_everywhere([20] * N)  # 0% at R@10, 100% at R@50
    finding = paired_finding(rows(a, run_id="a"), rows(b, run_id="b"), label=PAPER_QUESTIONS[3])
    assert [t.difference for t in finding.tests] == [pytest.approx(60.0), pytest.approx(-40.0)]
    assert finding.verdict == "mixed"


def test_refuses_runs_on_different_queries():
    b = rows(STRONG, run_id="b")
    b[0]["query_ids"] = [f"other/{i}" for i in range(N)]
    with pytest.raises(ComparisonError, match="different queries"):
        paired_finding(rows(STRONG, run_id="a"), b, label="x")


def test_refuses_runs_on_different_datasets_or_several_at_once():
    on_enhanced = rows(STRONG, dataset="synth_enhfashioniq", run_id="b")
    with pytest.raises(ComparisonError, match="different splits"):
        paired_finding(rows(STRONG, run_id="a"), on_enhanced, label="x")
    with pytest.raises(ComparisonError, match="exactly one dataset split"):
        paired_finding(rows(STRONG, run_id="a") + on_enhanced, rows(STRONG, run_id="c"), label="x")


def test_select_rows_filters_on_every_field():
    all_rows = rows(STRONG, run_id="a") + rows(WEAK, run_id="b")
    chosen = select_rows(all_rows, run_id="b", category="shirt")
    assert [(r["run_id"], r["category"]) for r in chosen] == [("b", "shirt")]


def test_format_prints_each_question_with_its_numbers_whichever_way_it_goes():
    worse = paired_finding(rows(WEAK, run_id="a"), rows(STRONG, run_id="b"), label=PAPER_QUESTIONS[0])
    better = paired_finding(rows(STRONG, run_id="c"), rows(WEAK, run_id="d"), label=PAPER_QUESTIONS[3])
    extra = paired_finding(rows(STRONG, run_id="e"), rows(STRONG, run_id="f"), label="my own question")
    text = format_findings([better, worse, extra])
    blocks = text.strip().split("\n\n")
    assert [b.splitlines()[0].split(" — ")[0].split(":")[0] for b in blocks] == [*PAPER_QUESTIONS, "my own question"]
    assert "verdict (Holm-corrected over R@10, R@50): A vs B: worse" in blocks[0] and "difference -50.00 points" in blocks[0]
    assert "p < 0.001" in blocks[0] and "(run a)" in blocks[0]
    assert blocks[1] == f"{PAPER_QUESTIONS[1]}: not measured in this run"
    assert "verdict (Holm-corrected over R@10, R@50): A vs B: better" in blocks[3] and "difference +50.00 points" in blocks[3]
    assert f"verdict (Holm-corrected over R@10, R@50): A vs B: {NO_DIFFERENCE}" in blocks[4] and "p = 1.000" in blocks[4]


def test_findings_between_labels_use_each_labels_newest_run_and_name_it():
    def labelled(ranks, label, run_id, dataset="fashioniq"):
        return [{**row, "label": label} for row in rows(ranks, dataset=dataset, run_id=run_id)]

    ranks = labelled(WEAK, "A", "20260101-old") + labelled(STRONG, "A", "20260102-new") + labelled(WEAK, "B", "20260101-b")
    ranks += labelled(WEAK, "B", "20260101-b2", dataset="enhfashioniq")  # A was not evaluated there: no finding
    findings = findings_between_labels(ranks, "my question", "A", "B", ("fashioniq", "enhfashioniq"))
    assert [(f.dataset, f.verdict) for f in findings] == [("fashioniq", "better")]
    assert findings[0].run_a.startswith("A: m:tiny @ckpt (run 20260102-new)")


def test_format_findings_answers_only_the_questions_asked():
    finding = paired_finding(rows(STRONG, run_id="a"), rows(WEAK, run_id="b"), label=PAPER_QUESTIONS[1])
    blocks = format_findings([finding], questions=(PAPER_QUESTIONS[1], "CIR+CTR vs CIR only")).strip().split("\n\n")
    assert len(blocks) == 2 and blocks[0].startswith(PAPER_QUESTIONS[1] + " — ")
    assert blocks[1] == "CIR+CTR vs CIR only: not measured in this run"


def test_the_overall_verdict_is_holm_corrected_over_k():
    def test(k, p, difference=2.0):
        return PairedTest(k=k, n_queries=600, recall_a=50 + difference, recall_b=50, difference=difference,
                          ci_low=0.1, ci_high=4.0, p_value=p, a_only=30, b_only=18)

    def verdict(*tests):
        return Finding("q", "a", "b", "fashioniq", "val", "fashioniq/v1", tests).verdict

    assert verdict(test(10, 0.03), test(50, 0.04)) == NO_DIFFERENCE  # 0.03 >= 0.05 / 2
    assert verdict(test(10, 0.02), test(50, 0.04)) == "better"  # 0.02 < 0.025, then 0.04 < 0.05
    assert verdict(test(10, 0.02), test(50, 0.04, difference=-2.0)) == "mixed"
    assert verdict(test(10, 0.02), test(50, 0.30, difference=-2.0)) == "better"
