"""Recall@K, averages and headline, bootstrap intervals, and the paired test."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from cirbench.eval.metrics import (
    ComparisonError,
    QueryRanks,
    bootstrap_recalls,
    category_rng,
    paired_test,
    recall_at_k,
    recall_with_ci,
    summarize,
)


def test_recall_is_the_percentage_of_ranks_below_k():
    ranks = np.array([0, 5, 9, 10, 49, 50])
    assert recall_at_k(ranks, 10) == pytest.approx(50.0)
    assert recall_at_k(ranks, 50) == pytest.approx(100 * 5 / 6)
    assert recall_at_k(ranks, 1) == pytest.approx(100 / 6)
    assert recall_at_k(np.array([], dtype=np.int64), 10) is None


def test_bootstrap_draws_match_resampling_query_indices():
    rng = np.random.default_rng(1)
    ranks = rng.integers(0, 80, size=400)
    ours = bootstrap_recalls(ranks, [10, 50], np.random.default_rng(0), n_resamples=4000)
    indices = np.random.default_rng(2).integers(0, 400, size=(4000, 400))
    for k in (10, 50):
        naive = 100 * (ranks[indices] < k).mean(axis=1)
        assert ours[k].mean() == pytest.approx(naive.mean(), abs=0.15)
        assert ours[k].std() == pytest.approx(naive.std(), rel=0.08)
    assert (ours[10] <= ours[50]).all()  # one resample serves every cut-off


def test_interval_contains_the_value_is_seeded_and_shrinks_with_more_queries():
    rng = np.random.default_rng(3)
    small, large = rng.integers(0, 100, size=200), rng.integers(0, 100, size=5000)
    a = recall_with_ci(small, [10, 50], "dress", seed=0)
    assert a == recall_with_ci(small, [10, 50], "dress", seed=0)
    assert a != recall_with_ci(small, [10, 50], "dress", seed=1)
    for k in (10, 50):
        assert a[k].ci_low <= a[k].value <= a[k].ci_high
    b = recall_with_ci(large, [10], "dress", seed=0)
    assert b[10].ci_high - b[10].ci_low < a[10].ci_high - a[10].ci_low
    assert recall_with_ci(np.array([], dtype=np.int64), [10], "dress")[10].value is None


def test_average_is_unweighted_and_headline_is_the_mean_of_r10_and_r50():
    ranks = {"dress": np.array([0] * 10), "shirt": np.array([0] * 10 + [60] * 90), "toptee": np.array([20, 60])}
    summary = summarize(ranks, ks=(1, 10, 50), headline_ks=(10, 50), seed=0)
    assert summary.categories["dress"][10].value == 100
    assert summary.average[10].value == pytest.approx((100 + 10 + 0) / 3)
    assert summary.average[50].value == pytest.approx((100 + 10 + 50) / 3)
    assert summary.headline.value == pytest.approx((summary.average[10].value + summary.average[50].value) / 2)
    assert summary.average[10].ci_low <= summary.average[10].value <= summary.average[10].ci_high
    assert summary.headline.ci_low <= summary.headline.value <= summary.headline.ci_high


def test_a_category_interval_does_not_depend_on_the_other_categories():
    rng = np.random.default_rng(4)
    dress, shirt = rng.integers(0, 100, 300), rng.integers(0, 100, 300)
    alone = summarize({"dress": dress}, (10,), (10,), seed=5).categories["dress"][10]
    together = summarize({"dress": dress, "shirt": shirt}, (10,), (10,), seed=5).categories["dress"][10]
    assert alone == together == recall_with_ci(dress, [10], "dress", seed=5)[10]
    assert category_rng(5, "dress").random() != category_rng(5, "shirt").random()


def test_an_empty_category_leaves_the_averages_empty():
    summary = summarize({"dress": np.array([1, 2]), "shirt": np.array([], dtype=np.int64)}, (10,), (10,))
    assert summary.average[10].value is None and summary.headline.value is None


# ---- paired test -----------------------------------------------------------------------------


def run(ranks_by_category, protocol="fashioniq/v1", prefix="q"):
    return [
        QueryRanks(protocol, c, [f"{c}/{prefix}{i}" for i in range(len(r))], np.asarray(r))
        for c, r in ranks_by_category.items()
    ]


def test_identical_runs_have_no_difference():
    ranks = {"dress": np.arange(100), "shirt": np.arange(50)}
    test = paired_test(run(ranks), run(ranks), 10)
    assert (test.difference, test.ci_low, test.ci_high, test.p_value) == (0, 0, 0, 1.0)
    assert (test.a_only, test.b_only, test.n_queries) == (0, 0, 150)


def test_mcnemar_counts_and_difference_on_a_worked_example():
    a = {"dress": np.array([0, 0, 0, 20, 20, 0])}
    b = {"dress": np.array([0, 20, 20, 0, 20, 20])}
    test = paired_test(run(a), run(b), 10)
    assert (test.a_only, test.b_only) == (3, 1)  # hit only in a: q1, q2, q5; only in b: q3
    assert test.recall_a == pytest.approx(400 / 6) and test.recall_b == pytest.approx(200 / 6)
    assert test.difference == pytest.approx(200 / 6)


def test_the_difference_averages_categories_without_weights():
    a = {"dress": np.zeros(10), "shirt": np.zeros(100)}
    b = {"dress": np.full(10, 99), "shirt": np.zeros(100)}
    assert paired_test(run(a), run(b), 10).difference == pytest.approx(50.0)  # (100 + 0) / 2


def exact_sign_test(a_only: int, b_only: int) -> float:
    m, observed = a_only + b_only, abs(a_only - b_only)
    return sum(comb(m, x) for x in range(m + 1) if abs(2 * x - m) >= observed) / 2**m


@pytest.mark.parametrize("a_only, b_only", [(14, 8), (30, 8)])
def test_sign_flip_p_value_matches_the_exact_sign_test_on_one_category(a_only, b_only):
    shared = np.random.default_rng(6).integers(0, 30, size=400 - a_only - b_only)
    a = np.concatenate([np.zeros(a_only), np.full(b_only, 99), shared])
    b = np.concatenate([np.full(a_only, 99), np.zeros(b_only), shared])
    test = paired_test(run({"dress": a}), run({"dress": b}), 10, n_permutations=20000)
    assert (test.a_only, test.b_only) == (a_only, b_only)
    exact = exact_sign_test(a_only, b_only)  # 0.286 and 0.0005
    assert test.p_value == pytest.approx(exact, abs=0.005 + 0.05 * exact)
    assert test.difference == pytest.approx(100 * (a_only - b_only) / 400)
    assert (test.ci_low > 0) == (exact < 0.05)


def test_queries_are_matched_by_id_not_by_position():
    rng = np.random.default_rng(7)
    a_ranks, b_ranks = rng.integers(0, 40, 60), rng.integers(0, 40, 60)
    a, b = run({"dress": a_ranks}), run({"dress": b_ranks})
    order = rng.permutation(60)
    shuffled = [QueryRanks("fashioniq/v1", "dress", [b[0].query_ids[i] for i in order], b_ranks[order])]
    assert paired_test(a, shuffled, 10, seed=3) == paired_test(a, b, 10, seed=3)


@pytest.mark.parametrize("change, message", [
    (lambda r: run(r, protocol="fashioniq/v2"), "different protocols"),
    (lambda r: run(r, prefix="other"), "different queries"),
    (lambda r: run({"dress": r["dress"]}), "different categories"),
])
def test_runs_that_are_not_comparable_are_refused(change, message):
    ranks = {"dress": np.arange(20), "shirt": np.arange(20)}
    with pytest.raises(ComparisonError, match=message):
        paired_test(run(ranks), change(ranks), 10)


def test_repeated_query_ids_are_refused():
    repeated = [QueryRanks("fashioniq/v1", "dress", ["q1", "q1"], np.array([0, 1]))]
    with pytest.raises(ComparisonError, match="repeats a query id"):
        paired_test(repeated, repeated, 10)


def test_intervals_do_not_depend_on_the_cutoffs_asked_together():
    ranks = np.random.default_rng(8).integers(0, 200, 300)
    together = recall_with_ci(ranks, [1, 5, 10, 50], "shirt", seed=2)
    assert recall_with_ci(ranks, [10], "shirt", seed=2)[10] == together[10]
    with pytest.raises(ValueError, match="K from 1 to 1000"):
        recall_with_ci(ranks, [0, 10], "shirt")


def test_one_per_category_average_and_an_empty_category_makes_it_none():
    from cirbench.eval.metrics import category_mean
    from cirbench.train.validation import summarise

    assert category_mean({"dress": 10.0, "shirt": 20.0, "toptee": 60.0}) == 30.0
    assert category_mean({"dress": 10.0, "shirt": None}) is None and category_mean({}) is None
    empty = summarize({"dress": np.array([0, 5]), "shirt": np.array([], dtype=np.int64)}, (10,), (10,))
    assert empty.average[10].value is None and empty.headline.value is None
    line = summarise([np.array([0, 20]), np.array([], dtype=np.int64)], (10, 50))
    assert line == {"R@10": None, "R@50": None, "headline": None}  # never the mean of dress alone
    assert summarise([np.array([0, 20]), np.array([60])], (10, 50)) == {"R@10": 25.0, "R@50": 50.0, "headline": 37.5}
