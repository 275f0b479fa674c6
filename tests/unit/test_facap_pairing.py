"""Pairing: exact top-k by inner product, other views of the product excluded, stable random pick."""

from __future__ import annotations

import numpy as np
import pytest

from cirbench.facap.bench_pairing import bench_pairing, category_sizes
from cirbench.facap.embedding import unit_rows
from cirbench.facap.pairing import group_indices, pair_group, search_excluding_products, stable_choice


def _brute_force(vectors, products, k):
    scores = vectors @ vectors.T
    scores[products[:, None] == products[None, :]] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_search_matches_brute_force_whatever_the_chunking(chunk_size):
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng.standard_normal((300, 16)))
    products = np.repeat(np.arange(100), 3)  # three views per product
    ids, scores = search_excluding_products(vectors, products, np.arange(300), k=20, chunk_size=chunk_size)
    expected_ids, expected_scores = _brute_force(vectors, products, 20)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    assert (products[ids] != products[:, None]).all()  # no view of the query's own product
    assert (ids == expected_ids).mean() > 0.99  # equal up to ties of float rounding


@pytest.mark.parametrize("gpus", [0, 2])
def test_the_index_goes_to_the_gpus_only_when_faiss_sees_one(monkeypatch, gpus):
    """faiss-gpu has no CPU fallback: the index moves only when get_num_gpus() > 0 (faked here)."""
    import faiss

    moved = []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: gpus, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", lambda index: moved.append(index) or index, raising=False)
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng.standard_normal((30, 8)))
    products = np.repeat(np.arange(10), 3)
    ids, _ = search_excluding_products(vectors, products, np.arange(30), k=5)
    np.testing.assert_array_equal(ids, _brute_force(vectors, products, 5)[0])
    assert len(moved) == (1 if gpus else 0)


def test_groups_smaller_than_k_return_every_other_product_then_padding():
    vectors = unit_rows(np.random.default_rng(1).standard_normal((5, 4)))
    products = np.array([0, 0, 1, 2, 2])
    ids, scores = search_excluding_products(vectors, products, np.arange(5), k=20)
    assert ids.shape == (5, 20)
    assert sorted(ids[0][ids[0] >= 0]) == [2, 3, 4]
    assert sorted(ids[2][ids[2] >= 0]) == [0, 1, 3, 4]  # the lone view of product 1: all others
    assert (ids[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all() and ids[0, 3] == -1


def test_pick_is_stable_per_image_and_uniform_over_the_top_k():
    assert stable_choice(0, "a", 20) == stable_choice(0, "a", 20)
    picks = [stable_choice(3, f"img{i}", 20) for i in range(4000)]
    counts = np.bincount(picks, minlength=20)
    assert counts.min() > 150 and counts.max() < 250


def test_pair_group_resumed_on_a_subset_gives_the_same_records():
    rng = np.random.default_rng(2)
    vectors = unit_rows(rng.standard_normal((60, 8)))
    ids = [f"x/{i:03d}" for i in range(60)]
    products = [f"p{i // 2}" for i in range(60)]
    full = pair_group(ids, vectors, products, seed=5)
    later = pair_group(ids, vectors, products, seed=5, queries=np.arange(30, 60))
    assert later == full[30:]
    assert all(r["target"] != r["key"] and products[ids.index(r["target"])] != products[ids.index(r["key"])] for r in full)
    assert {r["rank"] for r in full} <= set(range(1, 21))


def test_lonely_product_gets_no_target():
    records = pair_group(["a/0", "a/1"], unit_rows(np.eye(2)), ["p", "p"], seed=0)
    assert records == [{"key": "a/0", "target": None}, {"key": "a/1", "target": None}]


def test_groups_are_per_source_and_category():
    groups = group_indices([("f", "dress"), ("d", "dress"), ("f", "dress"), ("f", "top")])
    assert {k: v.tolist() for k, v in groups.items()} == {("d", "dress"): [1], ("f", "dress"): [0, 2], ("f", "top"): [3]}


def test_bench_reports_ratio_and_peak_memory_on_a_small_run():
    assert sum(category_sizes(227_680).values()) == 227_680 and len(category_sizes(10)) == 6
    report = bench_pairing(n=1200, dim=32, repeats=2)
    assert report["ours_s"] > 0 and report["bare_s"] > 0 and report["repeats"] == 2
    assert report["ratio"] == pytest.approx(report["ours_s"] / report["bare_s"], rel=0.05)
    assert 10 < report["peak_mb"] < 4096
