"""Target ranks (tie rule, reference removal, bounded chunks), the gallery cache, and the evaluator
against a naive full-sort reference."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cirbench.errors import DataError
from cirbench.data.schema import CIRQuery
from cirbench.eval import retrieval
from cirbench.eval.evaluator import evaluate
from cirbench.eval.protocols import FASHIONIQ_V1
from cirbench.eval.retrieval import FeatureCache, GalleryScores, gallery_key, rank_targets, ranks_from_scores
from cirbench.scorers import Scorer, get_scorer
from fake_cir import FakeCIRModel, make_split, naive_ranks


class IntegerDot(Scorer):
    """Exact small-integer scores: plenty of exact ties, no rounding noise between code paths."""

    name = "integer_dot"

    def prepare_query(self, q):
        return q.float()

    def prepare_candidates(self, c):
        return c.float()

    def score_prepared(self, q, c):
        return q @ c.T


class RecordingScorer(IntegerDot):
    def __init__(self):
        self.block_shapes = []

    def score_prepared(self, q, c):
        self.block_shapes.append((q.shape[0], c.shape[0]))
        return super().score_prepared(q, c)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# ---- ranks -----------------------------------------------------------------------------------


def test_tie_rule_on_a_worked_example():
    scores = torch.tensor([[0.5, 0.9, 0.9, 0.9, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]])
    # query 0: target col 2 ties with cols 1 and 3 -> both count against it; query 1: all equal
    assert ranks_from_scores(scores, torch.tensor([2, 0])).tolist() == [2, 4]
    assert ranks_from_scores(scores, torch.tensor([0, 4])).tolist() == [3, 4]


@pytest.mark.parametrize("scorer_name, q_shape, c_shape", [
    ("cosine", (16,), (16,)), ("multihead", (4, 8), (4, 8)), ("maxsim", (8,), (3, 8)),
])
def test_ranks_equal_a_full_sort_on_random_scores(gen, scorer_name, q_shape, c_shape):
    scorer = get_scorer(scorer_name)
    queries, candidates = torch.randn(53, *q_shape, generator=gen), torch.randn(40, *c_shape, generator=gen)
    targets = torch.randint(0, 40, (53,), generator=gen)
    expected = naive_ranks(scorer(queries, candidates).numpy(), targets.numpy())
    got = rank_targets(GalleryScores.of_scorer(scorer, candidates), queries, targets, chunk_size=7)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_ranks_equal_a_full_sort_with_forced_ties(gen):
    queries = torch.randint(-1, 2, (64, 3), generator=gen)
    candidates = torch.randint(-1, 2, (30, 3), generator=gen)
    targets = torch.randint(0, 30, (64,), generator=gen)
    scores = (queries @ candidates.T).numpy()
    assert len(np.unique(scores)) < 10  # ties everywhere
    got = rank_targets(GalleryScores.of_scorer(IntegerDot(), candidates), queries, targets, chunk_size=5)
    np.testing.assert_array_equal(got, naive_ranks(scores, targets.numpy()))


def test_removing_the_reference_equals_a_full_sort_without_its_column(gen):
    queries = torch.randint(-1, 2, (40, 3), generator=gen)
    candidates = torch.randint(-1, 2, (25, 3), generator=gen)
    targets = torch.randint(0, 25, (40,), generator=gen)
    references = torch.randint(-1, 25, (40,), generator=gen)  # -1: reference not in the gallery
    references[:3] = targets[:3]  # a reference that is its own target is never removed
    scores = (queries @ candidates.T).numpy()
    got = rank_targets(GalleryScores.of_scorer(IntegerDot(), candidates), queries, targets, references, chunk_size=6)
    np.testing.assert_array_equal(got, naive_ranks(scores, targets.numpy(), references.numpy()))
    kept = rank_targets(GalleryScores.of_scorer(IntegerDot(), candidates), queries, targets, chunk_size=6)
    assert (got <= kept).all() and (got < kept).any()


def test_scores_are_made_one_bounded_chunk_at_a_time(gen, monkeypatch):
    scorer = RecordingScorer()
    queries, candidates = torch.randint(-1, 2, (50, 3), generator=gen), torch.randint(-1, 2, (9, 3), generator=gen)
    rank_targets(GalleryScores.of_scorer(scorer, candidates), queries, torch.zeros(50, dtype=torch.long), chunk_size=16)
    assert scorer.block_shapes == [(16, 9), (16, 9), (16, 9), (2, 9)]
    monkeypatch.setattr(retrieval, "MAX_CHUNK_ELEMENTS", 9 * 4)  # a wide gallery shrinks the chunks
    scorer.block_shapes.clear()
    rank_targets(GalleryScores.of_scorer(scorer, candidates), queries, torch.zeros(50, dtype=torch.long), chunk_size=16)
    assert max(rows for rows, _ in scorer.block_shapes) == 4


def test_maxsim_chunks_count_candidate_tokens():
    maxsim = GalleryScores.of_scorer(get_scorer("maxsim"), torch.zeros(1000, 32, 8))
    assert maxsim.row_elements == 32000
    assert retrieval.chunk_rows(maxsim.row_elements, 1024) == min(1024, retrieval.MAX_CHUNK_ELEMENTS // 32000)
    assert retrieval.chunk_rows(GalleryScores.of_scorer(get_scorer("cosine"), torch.zeros(1000, 8)).row_elements, 1024) == 1024


def test_a_nan_target_score_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores(torch.tensor([[0.1, float("nan")]]), torch.tensor([1]))


def test_no_queries_give_no_ranks():
    got = rank_targets(GalleryScores.of_scorer(get_scorer("cosine"), torch.ones(3, 4)), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert got.shape == (0,) and got.dtype == np.int64


# ---- gallery cache ---------------------------------------------------------------------------


def test_cache_round_trip_and_unreadable_or_stale_files_read_as_absent(tmp_path, gen):
    cache = FeatureCache(tmp_path / "features")
    features = torch.randn(5, 4, 8, generator=gen)
    path = cache.save("k1", features, {"model": "fake:test"})
    assert path.suffix == ".safetensors" and not list(path.parent.glob("*.partial"))
    torch.testing.assert_close(cache.load("k1", 5), features)
    assert cache.load("k1", 6) is None  # another gallery size: re-encode
    assert cache.load("absent", 5) is None
    path.write_bytes(b"not a safetensors file")
    assert cache.load("k1", 5) is None


def test_gallery_key_depends_on_weights_order_and_image_files(tmp_path):
    split = make_split(tmp_path, n_gallery=6, n_queries=2, duplicates=0)
    args = ("fake:test", "hash1")
    key = gallery_key(*args, split.gallery, split.image_paths)
    assert key == gallery_key(*args, list(split.gallery), dict(split.image_paths))
    assert key != gallery_key("fake:test", "hash2", split.gallery, split.image_paths)
    assert key != gallery_key("other:test", "hash1", split.gallery, split.image_paths)
    assert key != gallery_key(*args, split.gallery[::-1], split.image_paths)
    # the same files through a linked folder (enhFashionIQ's images/ -> FashionIQ's): the same key
    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path, target_is_directory=True)
    via_link = {i: linked / Path(p).relative_to(tmp_path) for i, p in split.image_paths.items()}
    assert gallery_key(*args, split.gallery, via_link) == key
    first = split.image_paths[split.gallery[0]]
    os.utime(first, ns=(1, 1))
    assert key != gallery_key(*args, split.gallery, split.image_paths)


# ---- the evaluator ---------------------------------------------------------------------------


def naive_split_ranks(model, split, protocol=FASHIONIQ_V1):
    """Encode everything at once, score the full [Q, N] matrix, full-sort each row."""
    from PIL import Image

    def load(ids):
        return torch.stack([model.preprocess(Image.open(split.image_paths[i]).convert("RGB")) for i in ids])

    q = model.encode_query(load([x.reference_id for x in split.queries]), [protocol.query_text(x.captions) for x in split.queries])
    scores = model.similarity(q, model.encode_candidates(load(split.gallery))).numpy()
    targets = [split.gallery.index(x.target_id) for x in split.queries]
    excluded = [split.gallery.index(x.reference_id) for x in split.queries] if protocol.remove_reference else None
    return naive_ranks(scores, targets, excluded)


@pytest.mark.parametrize("scorer_name", ["cosine", "multihead", "maxsim"])
def test_evaluator_ranks_equal_the_naive_reference_ties_included(tmp_path, scorer_name):
    splits = [make_split(tmp_path / c, c, seed=i) for i, c in enumerate(["dress", "shirt"])]
    model = FakeCIRModel(scorer_name)
    result = evaluate(model, splits, FASHIONIQ_V1, batch_size=7, chunk_size=8, progress=False)
    assert (result.model, result.protocol, result.checkpoint_hash) == ("fake_cir:test_tiny", "fashioniq/v1", model.checkpoint_hash())
    for split, ranked in zip(splits, result.splits):
        assert ranked.query_ids == [q.query_id for q in split.queries]
        assert (ranked.n_queries, ranked.n_queries_total, ranked.n_gallery) == (30, 30, 24)
        np.testing.assert_array_equal(ranked.ranks, naive_split_ranks(model, split))
    all_ranks = np.concatenate([r.ranks for r in result.splits])
    assert len(np.unique(all_ranks)) > 3  # the fake model discriminates a little, not all ties


def test_evaluator_with_reference_removal_equals_the_naive_reference(tmp_path):
    split = make_split(tmp_path, "dress")
    protocol = dataclasses.replace(FASHIONIQ_V1, version="test-remove-ref", remove_reference=True)
    model = FakeCIRModel("multihead")
    result = evaluate(model, [split], protocol, chunk_size=8, progress=False)
    np.testing.assert_array_equal(result.splits[0].ranks, naive_split_ranks(model, split, protocol))


def test_queries_use_the_protocol_text_and_encode_query(tmp_path):
    split = make_split(tmp_path, n_queries=3)
    split.queries[0] = dataclasses.replace(split.queries[0], captions=(" is shorter.", "blue?"))
    seen = []
    model = FakeCIRModel()
    original = model.encode_query
    model.encode_query = lambda images, texts: seen.extend(texts) or original(images, texts)
    evaluate(model, [split], FASHIONIQ_V1, progress=False)
    assert seen[0] == "Is shorter and blue"
    assert model.query_calls == 1


def test_a_rerun_reads_the_gallery_from_the_cache(tmp_path):
    splits = [make_split(tmp_path / c, c, seed=i) for i, c in enumerate(["dress", "shirt"])]
    first = FakeCIRModel()
    before = evaluate(first, splits, FASHIONIQ_V1, batch_size=10, cache_dir=tmp_path / "cache", progress=False)
    assert first.candidate_calls == 6  # 24 images per gallery in batches of 10, two galleries
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    again = FakeCIRModel()
    after = evaluate(again, splits, FASHIONIQ_V1, batch_size=10, cache_dir=tmp_path / "cache", progress=False)
    assert again.candidate_calls == 0 and again.query_calls > 0
    for a, b in zip(before.splits, after.splits):
        np.testing.assert_array_equal(a.ranks, b.ranks)
    other_weights = FakeCIRModel(seed=1)
    evaluate(other_weights, splits, FASHIONIQ_V1, cache_dir=tmp_path / "cache", progress=False)
    assert other_weights.candidate_calls == 2


def test_a_target_outside_the_gallery_names_the_file_and_query_before_any_encoding(tmp_path):
    good, bad = make_split(tmp_path / "dress"), make_split(tmp_path / "shirt", "shirt", n_queries=2)
    bad.queries[1] = dataclasses.replace(bad.queries[1], target_id="not-there")
    model = FakeCIRModel()
    with pytest.raises(DataError, match="not-there.*not in the gallery") as error:
        evaluate(model, [good, bad], FASHIONIQ_V1, progress=False)
    assert error.value.file == str(bad.source) and error.value.entry == "shirt/val/1"
    assert model.candidate_calls == model.query_calls == 0


def test_a_query_without_target_and_a_duplicated_gallery_image_are_refused(tmp_path):
    split = make_split(tmp_path, n_queries=2)
    split.queries[0] = CIRQuery("dress/test/0", "dress", split.gallery[0], None, ("a", "b"))
    with pytest.raises(DataError, match="no target"):
        evaluate(FakeCIRModel(), [split], FASHIONIQ_V1, progress=False)
    split = make_split(tmp_path, n_queries=2)
    split.gallery.append(split.gallery[0])
    with pytest.raises(DataError, match="lists this image twice"):
        evaluate(FakeCIRModel(), [split], FASHIONIQ_V1, progress=False)


def test_embeddings_that_contradict_the_meta_are_refused(tmp_path):
    model = FakeCIRModel("multihead")
    model.meta = dataclasses.replace(model.meta, candidate_shape=(4, 5))
    with pytest.raises(ValueError, match=r"gallery embeddings have shape \(24, 4, 3\), expected \(24, 4, 5\)"):
        evaluate(model, [make_split(tmp_path)], FASHIONIQ_V1, batch_size=64, progress=False)


def test_non_finite_embeddings_are_refused(tmp_path):
    model = FakeCIRModel("cosine")
    original = model.encode_candidates
    model.encode_candidates = lambda images: original(images) / 0.0
    with pytest.raises(ValueError, match="gallery embeddings hold NaN or infinite values"):
        evaluate(model, [make_split(tmp_path)], FASHIONIQ_V1, progress=False)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_an_unreadable_image_names_its_file(tmp_path, num_workers):
    split = make_split(tmp_path)
    split.image_paths[split.gallery[3]].write_bytes(b"broken")
    with pytest.raises(DataError, match="cannot be read as an image") as error:
        evaluate(FakeCIRModel(), [split], FASHIONIQ_V1, num_workers=num_workers, progress=False)
    assert error.value.file == str(split.image_paths[split.gallery[3]])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_oversized_image_names_its_file_before_decoding(tmp_path, num_workers):
    from bad_inputs import png_header_only

    split = make_split(tmp_path)
    png_header_only(split.image_paths[split.gallery[2]], 12_000, 12_000)
    with pytest.raises(DataError, match="too large to decode safely") as error:
        evaluate(FakeCIRModel(), [split], FASHIONIQ_V1, num_workers=num_workers, progress=False)
    assert error.value.file == str(split.image_paths[split.gallery[2]])


def test_worker_processes_give_the_same_ranks(tmp_path):
    split = make_split(tmp_path)
    in_process = evaluate(FakeCIRModel(), [split], FASHIONIQ_V1, batch_size=8, progress=False)
    with_workers = evaluate(FakeCIRModel(), [split], FASHIONIQ_V1, batch_size=8, num_workers=2, progress=False)
    np.testing.assert_array_equal(in_process.splits[0].ranks, with_workers.splits[0].ranks)


def test_a_torch_module_is_evaluated_in_eval_mode_and_restored(tmp_path):
    class ModuleModel(torch.nn.Module, FakeCIRModel):
        def __init__(self):
            torch.nn.Module.__init__(self)
            FakeCIRModel.__init__(self)
            self.modes = []

        def encode_candidates(self, images):
            self.modes.append(self.training)
            return FakeCIRModel.encode_candidates(self, images)

    model = ModuleModel().train()
    evaluate(model, [make_split(tmp_path)], FASHIONIQ_V1, progress=False)
    assert model.modes == [False] and model.training


def test_a_split_without_queries_gives_empty_ranks(tmp_path):
    split = make_split(tmp_path, n_queries=2)
    split.queries.clear()
    ranked = evaluate(FakeCIRModel(), [split], FASHIONIQ_V1, progress=False).splits[0]
    assert ranked.n_queries == 0 and ranked.n_queries_total == 2 and ranked.ranks.shape == (0,)
