"""Recall@K from target ranks, bootstrap intervals, and a paired test between two runs.

Every number here comes from the per-query target ranks the evaluator keeps (0-based; ties count
against the target, see ``cirbench.eval.retrieval``), so values, intervals and tests agree.

- Recall@K = 100 x the fraction of queries whose target rank is < K (a hit rate).
- The average over categories is the unweighted mean of the per-category values
  (``category_mean``, the one average used everywhere: tables, validation lines, summaries); a
  category without a value (no queries, or not evaluated) makes the average None, never a silent
  mean of the others. The headline is the mean over ``protocol.headline_ks`` of those averages
  ((R@10 + R@50) / 2 for fashioniq/v1).
- Bootstrap: the 95% percentile interval over queries resampled with replacement, each category
  independently (seeded per category name, so a category's interval does not depend on which
  other categories are evaluated). A recall depends on a resample only through how many drawn
  queries have each rank, so the resample is drawn as multinomial counts over rank values: the
  same distribution as resampling query indices, without a [resamples, queries] array.
- Paired test: two runs on the same query ids under the same protocol. The difference (a - b) gets
  a paired bootstrap interval and a two-sided p-value from a sign-flip permutation test on the
  per-query hit differences; McNemar's discordant counts (hit only in a, hit only in b) come too.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

N_RESAMPLES = 1000
MAX_BOOTSTRAP_K = 1000
N_PERMUTATIONS = 10000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float | None  # None when there are no queries
    ci_low: float | None = None
    ci_high: float | None = None


def hits(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-query hit at K: the target's rank (0-based, ties against the target) is below K."""
    return np.asarray(ranks) < k


def recall_at_k(ranks: np.ndarray, k: int) -> float | None:
    """Recall@K in percent: 100 x fraction of queries with rank < K (ties count against the
    target: rank = candidates scoring higher + other candidates scoring the same). None if empty."""
    ranks = np.asarray(ranks)
    return None if ranks.size == 0 else 100.0 * float(np.mean(ranks < k))


def category_mean(values: Mapping[str, float | None]) -> float | None:
    """The unweighted mean of per-category ``values``; None when there is no category or any
    category has no value (an empty category never drops silently out of an average)."""
    if not values or any(value is None for value in values.values()):
        return None
    return sum(values.values()) / len(values)


def category_rng(seed: int, category: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(category.encode())])


def bootstrap_recalls(
    ranks: np.ndarray, ks: Sequence[int], rng: np.random.Generator, n_resamples: int = N_RESAMPLES
) -> dict[int, np.ndarray]:
    """Recall@K of ``n_resamples`` bootstrap resamples of the queries: {k: [n_resamples]}.

    Ranks are binned by value up to ``MAX_BOOTSTRAP_K`` whatever ``ks`` is asked, so the draws,
    and so every interval, do not depend on which cut-offs are requested together."""
    if min(ks) < 1 or max(ks) > MAX_BOOTSTRAP_K:
        raise ValueError(f"bootstrap intervals support K from 1 to {MAX_BOOTSTRAP_K}, got {sorted(ks)}")
    ranks = np.asarray(ranks)
    bins = np.bincount(np.minimum(ranks, MAX_BOOTSTRAP_K), minlength=MAX_BOOTSTRAP_K + 1)
    counts = rng.multinomial(len(ranks), bins / len(ranks), size=n_resamples)
    below = np.cumsum(counts, axis=1) * (100.0 / len(ranks))  # below[:, j]: resampled recall@(j+1)
    return {k: below[:, k - 1] for k in ks}


def _interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _estimate(value: float, samples: np.ndarray) -> Estimate:
    return Estimate(value, *_interval(samples))


def recall_with_ci(
    ranks: np.ndarray, ks: Sequence[int], category: str, *, seed: int = 0, n_resamples: int = N_RESAMPLES
) -> dict[int, Estimate]:
    """Recall@K and its bootstrap interval for one category: {k: Estimate}."""
    if len(ranks) == 0:
        return {k: Estimate(None) for k in ks}
    samples = bootstrap_recalls(ranks, ks, category_rng(seed, category), n_resamples)
    return {k: _estimate(recall_at_k(ranks, k), samples[k]) for k in ks}


@dataclass
class Summary:
    categories: dict[str, dict[int, Estimate]]
    average: dict[int, Estimate]  # unweighted mean over categories
    headline: Estimate  # mean over headline_ks of the averages


def summarize(
    ranks_by_category: Mapping[str, np.ndarray],
    ks: Sequence[int],
    headline_ks: Sequence[int],
    *,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> Summary:
    """Per-category Recall@K, their unweighted mean and the headline, all with bootstrap intervals
    (each category resampled independently; the averages from the same resamples)."""
    all_ks = sorted(set(ks) | set(headline_ks))
    categories = {c: recall_with_ci(r, all_ks, c, seed=seed, n_resamples=n_resamples) for c, r in ranks_by_category.items()}
    if not ranks_by_category or any(len(r) == 0 for r in ranks_by_category.values()):
        return Summary(categories, {k: Estimate(None) for k in all_ks}, Estimate(None))
    samples = {
        c: bootstrap_recalls(r, all_ks, category_rng(seed, c), n_resamples) for c, r in ranks_by_category.items()
    }
    average = {}
    average_samples = {}
    for k in all_ks:
        average_samples[k] = np.mean([samples[c][k] for c in samples], axis=0)
        average[k] = _estimate(category_mean({c: categories[c][k].value for c in categories}), average_samples[k])
    headline_value = float(np.mean([average[k].value for k in headline_ks]))
    headline = _estimate(headline_value, np.mean([average_samples[k] for k in headline_ks], axis=0))
    return Summary(categories, {k: average[k] for k in ks}, headline)


class ComparisonError(ValueError):
    """Two runs that cannot be compared query by query (other queries or another protocol)."""


@dataclass(frozen=True)
class QueryRanks:
    """The target ranks of one run on one category, with the ids they belong to."""

    protocol: str
    category: str
    query_ids: Sequence[str]
    ranks: np.ndarray


@dataclass(frozen=True)
class PairedTest:
    k: int
    n_queries: int
    recall_a: float  # unweighted mean over categories, percent
    recall_b: float
    difference: float  # a - b, points
    ci_low: float
    ci_high: float
    p_value: float  # two-sided, sign-flip permutation test
    a_only: int  # McNemar b: hit in a, miss in b
    b_only: int  # McNemar c: hit in b, miss in a


def _aligned_hits(a: Sequence[QueryRanks], b: Sequence[QueryRanks], k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{category: (hits of a, hits of b)} on the same query order; refuses mismatched runs."""
    protocols = {r.protocol for r in (*a, *b)}
    if len(protocols) != 1:
        raise ComparisonError(f"runs use different protocols ({', '.join(sorted(protocols))}): not comparable")
    by_category_a, by_category_b = {r.category: r for r in a}, {r.category: r for r in b}
    if len(by_category_a) != len(a) or len(by_category_b) != len(b):
        raise ComparisonError("a run lists the same category twice")
    if set(by_category_a) != set(by_category_b):
        raise ComparisonError(
            f"runs cover different categories: {sorted(by_category_a)} vs {sorted(by_category_b)}"
        )
    return {c: _pair_category(by_category_a[c], by_category_b[c], k) for c in sorted(by_category_a)}


def _pair_category(a: QueryRanks, b: QueryRanks, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids_a, ids_b = list(a.query_ids), list(b.query_ids)
    if len(set(ids_a)) != len(ids_a) or len(set(ids_b)) != len(ids_b):
        raise ComparisonError(f"{a.category}: a run repeats a query id")
    if set(ids_a) != set(ids_b):
        only_a, only_b = len(set(ids_a) - set(ids_b)), len(set(ids_b) - set(ids_a))
        raise ComparisonError(
            f"{a.category}: runs were evaluated on different queries ({only_a} only in a, {only_b} only in b)"
        )
    if not ids_a:
        raise ComparisonError(f"{a.category}: no queries to compare")
    position_b = {query_id: i for i, query_id in enumerate(ids_b)}
    order_b = np.array([position_b[query_id] for query_id in ids_a])
    return hits(a.ranks, k), hits(np.asarray(b.ranks)[order_b], k)


def paired_test(
    a: Sequence[QueryRanks],
    b: Sequence[QueryRanks],
    k: int,
    *,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
    n_permutations: int = N_PERMUTATIONS,
) -> PairedTest:
    """Compare Recall@K of runs ``a`` and ``b`` (averaged over their categories) query by query."""
    pairs = _aligned_hits(a, b, k)
    weights = {c: 100.0 / (len(pairs) * len(ha)) for c, (ha, _) in pairs.items()}
    up = {c: int(np.sum(ha & ~hb)) for c, (ha, hb) in pairs.items()}
    down = {c: int(np.sum(~ha & hb)) for c, (ha, hb) in pairs.items()}
    recall_a = sum(weights[c] * ha.sum() for c, (ha, _) in pairs.items())
    recall_b = sum(weights[c] * hb.sum() for c, (_, hb) in pairs.items())
    difference = sum(weights[c] * (up[c] - down[c]) for c in pairs)
    rng = np.random.default_rng([seed, k])
    low, high = _interval(_bootstrap_difference(pairs, up, down, weights, rng, n_resamples))
    p_value = _sign_flip_p_value(up, down, weights, difference, rng, n_permutations)
    return PairedTest(
        k, sum(len(ha) for ha, _ in pairs.values()), float(recall_a), float(recall_b), float(difference),
        low, high, p_value, sum(up.values()), sum(down.values()),
    )


def _bootstrap_difference(pairs, up, down, weights, rng, n_resamples) -> np.ndarray:
    """Paired resamples of the difference: each category's queries drawn with replacement,
    counted as (a only, b only, same) cells."""
    total = np.zeros(n_resamples)
    for c, (ha, _) in pairs.items():
        n = len(ha)
        probs = np.array([up[c], down[c], n - up[c] - down[c]]) / n
        cells = rng.multinomial(n, probs, size=n_resamples)
        total += weights[c] * (cells[:, 0] - cells[:, 1])
    return total


def _sign_flip_p_value(up, down, weights, observed, rng, n_permutations) -> float:
    """Two-sided p-value: under no difference each discordant query's sign is a fair coin, so a
    category's flipped sum is 2 x Binomial(discordant, 1/2) - discordant."""
    if all(up[c] + down[c] == 0 for c in up):
        return 1.0
    flipped = np.zeros(n_permutations)
    for c in up:
        discordant = up[c] + down[c]
        flipped += weights[c] * (2 * rng.binomial(discordant, 0.5, size=n_permutations) - discordant)
    at_least = np.abs(flipped) >= abs(observed) - 1e-9 * max(1.0, abs(observed))
    return float((1 + at_least.sum()) / (1 + n_permutations))
